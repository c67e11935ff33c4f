"""Teacher outputs stored once per training view: KD without the teacher.

For V views of every training segment (``speechbrain_kd.data.views``) the
teacher runs once and its logits and utterance embedding are stored;
training then reads them for the view it draws, with no teacher forward
pass and no teacher on the device (as FKD / ReLabel do for images).

The cache is built in ``<folder>.partial`` and renamed to ``<folder>``
when complete; an interrupted build (even ``kill -9``) continues where it
stopped when the same command runs again. A cache is keyed by the teacher's
weights (a hash of its checkpoint files), the training manifest, the view
settings and the storage settings: one that does not match is refused
with an error naming what differs (``rebuild: True`` replaces it).

Frame-level teacher taps (``teacher_taps``) are not cached (they would
take ~100x the space); a cached run that asks for them is an error.

Modules: ``format`` (the storage layout, keys, top-k storage and its
bound), ``store`` (``TeacherCache`` reads a cache, ``CacheWriter`` writes
one), ``build`` (the build loop and the ``teacher_cache`` YAML entry).
Every public name is importable from ``speechbrain_kd.teacher_cache``.
"""

from speechbrain_kd.teacher_cache.build import (
    build_cache,
    cache_settings,
    folder_size,
    prepare_teacher_cache,
)
from speechbrain_kd.teacher_cache.format import (
    FORMAT,
    FULL_LOGITS_MAX_CLASSES,
    bytes_per_view,
    check_meta,
    file_digest,
    read_meta,
    rebuild_logits,
    split_top,
    tail_bound,
    teacher_digest,
)
from speechbrain_kd.teacher_cache.store import CacheWriter, TeacherCache

__all__ = [
    "FORMAT",
    "FULL_LOGITS_MAX_CLASSES",
    "CacheWriter",
    "TeacherCache",
    "build_cache",
    "bytes_per_view",
    "cache_settings",
    "check_meta",
    "file_digest",
    "folder_size",
    "prepare_teacher_cache",
    "read_meta",
    "rebuild_logits",
    "split_top",
    "tail_bound",
    "teacher_digest",
]
