"""Manifests, trial lists and dataio pipelines shared by the recipes.

Every corpus preparation in this project writes the same files, so that
``train_teacher.py`` and ``train_kd.py`` run unchanged on any of them:

- ``train.csv``, ``valid.csv``, ``test.csv`` with SpeechBrain's speaker
  columns ``ID,duration,wav,start,stop,spk_id`` (``start``/``stop`` in
  samples, ``stop`` exclusive);
- ``veri_test2.txt``, a VoxCeleb-format trial list: one ``label enrol test``
  line per trial, ``label`` 1 for target and 0 for non-target, where
  ``enrol`` and ``test`` are test-set IDs followed by an audio extension.

Bad input fails early with one error naming the file (and line) and what
was expected: ``read_csv`` / ``read_trials`` check the manifests and trial
lists, ``check_audio`` checks every audio file a manifest points to before
any training step, and ``load_audio`` checks what it reads.

Modules: ``manifests`` (CSV I/O and row checks), ``trials`` (trial lists),
``audio`` (audio I/O and resampling guards), ``crops`` (random training
crops), ``views`` (fixed training views), ``datasets`` (the recipes'
datasets and pipelines). Every public name is importable from
``speechbrain_kd.data``.

Audio rules (``dataio_prep`` options, keys of the recipe YAMLs):

- ``sample_rate``: audio at another rate is an error, unless ``resample``
  is True (then it is resampled on loading; ``start``/``stop`` stay in
  samples of the file's own rate);
- multi-channel audio is averaged to mono (``downmix``; False makes it an
  error);
- a training or validation segment shorter than the training crop
  (``sentence_len``) is kept whole and zero-padded in its batch: the
  relative lengths of the batch mask the padding in the features'
  normalisation and in the pooling, so 1-s utterances with a 1-s crop (or
  shorter ones) train on their real length. Segments shorter than
  ``min_sentence_len`` seconds (default: half the crop) are rejected;
- empty, unreadable, truncated audio and audio holding NaN or infinite
  samples are errors.

Training crops are drawn from a generator seeded by ``(seed, epoch,
example ID)`` (``EpochDataset``), so they do not depend on the process,
the data-loading workers or an interruption: a resumed or a multi-process
run crops every example exactly as an uninterrupted single-process run.
Only the crop is read from the file (``load_random_crop``: a 3-s crop of
a 60-s VoxCeleb file decodes 3 s, not 60).
"""

from speechbrain_kd.data.audio import (
    MAX_SAMPLES,
    audio_info,
    audio_options,
    check_audio,
    check_resampling,
    load_audio,
    segment_bounds,
)
from speechbrain_kd.data.crops import (
    crop_generator,
    crop_segment,
    load_random_crop,
    random_crop,
)
from speechbrain_kd.data.datasets import (
    EpochDataset,
    audio_pipeline,
    dataio_prep,
    manifest_dataset,
    prepare_datasets,
    random_chunk_csv,
)
from speechbrain_kd.data.manifests import (
    AUDIO_EXTENSIONS,
    CSV_FIELDS,
    read_csv,
    resolve_path,
    write_csv,
)
from speechbrain_kd.data.trials import (
    check_trials,
    make_trials,
    missing_trial_ids,
    read_trials,
    trial_id,
    write_trials,
)
from speechbrain_kd.data.views import (
    epoch_view,
    load_view_crop,
    view_generator,
    views_seed,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "CSV_FIELDS",
    "MAX_SAMPLES",
    "EpochDataset",
    "audio_info",
    "audio_options",
    "audio_pipeline",
    "check_audio",
    "check_resampling",
    "check_trials",
    "crop_generator",
    "crop_segment",
    "dataio_prep",
    "epoch_view",
    "load_audio",
    "load_random_crop",
    "load_view_crop",
    "make_trials",
    "manifest_dataset",
    "missing_trial_ids",
    "prepare_datasets",
    "random_chunk_csv",
    "random_crop",
    "read_csv",
    "read_trials",
    "resolve_path",
    "segment_bounds",
    "trial_id",
    "view_generator",
    "views_seed",
    "write_csv",
    "write_trials",
]
