"""Override of ``Checkpointer._save_checkpoint_metafile``: write it aside.

SpeechBrain writes a checkpoint's ``CKPT.yaml`` first, then the files of
the recoverables. ``PendingMetafile`` writes it as ``CKPT.yaml.pending``
instead; ``speechbrain_kd.checkpointing.AtomicCheckpointer`` renames it
into place once every recoverable is saved. Signature checked by
``tests/test_sb_private.py``.
"""

import pathlib

from speechbrain.utils.checkpoints import METAFNAME, Checkpointer

PENDING_META = f"{METAFNAME}.pending"


class PendingMetafile(Checkpointer):
    """A ``Checkpointer`` that writes ``CKPT.yaml`` as ``PENDING_META``."""

    def _save_checkpoint_metafile(
        self, fpath, meta_to_include={}, end_of_epoch=True
    ):
        pending = pathlib.Path(fpath).with_name(PENDING_META)
        return super()._save_checkpoint_metafile(
            pending, meta_to_include, end_of_epoch
        )
