"""Every use of SpeechBrain's private API in this package, in one place.

SpeechBrain's public hooks do not cover four things this package does;
they are overridden or used here, and nowhere else:

- ``sb_private.brain``: ``Brain._train_loader_specifics`` and
  ``Brain._wrap_distributed`` (``torchrun`` runs that see the examples of
  a single-process run, no ``SyncBatchNorm`` on CPU), ``Brain._save`` /
  ``Brain._recover`` (the statistics of an unfinished epoch);
- ``sb_private.checkpoints``: ``Checkpointer._save_checkpoint_metafile``
  (atomic checkpoints);
- ``sb_private.normalization``: the statistics and ``_save`` of
  ``InputNormalization`` (the published embedding normalisation);
- ``sb_private.export_patches``: functions and methods swapped during the
  ONNX export.

``PRIVATE_API`` lists each with the signature this code was written
against; ``check_private_api()`` (run by ``tests/test_sb_private.py``)
compares them with the installed SpeechBrain, so that a release that
changes one fails the tests loudly instead of breaking a run silently.
"""

import importlib
import inspect

# (module, attribute path, signature this package was written against)
PRIVATE_API = (
    ("speechbrain.core", "Brain._train_loader_specifics",
     "(self, dataset, loader_kwargs)"),
    ("speechbrain.core", "Brain._wrap_distributed", "(self)"),
    ("speechbrain.core", "Brain._save", "(self, path)"),
    ("speechbrain.core", "Brain._recover", "(self, path, end_of_epoch)"),
    ("speechbrain.utils.checkpoints", "Checkpointer._save_checkpoint_metafile",
     "(self, fpath, meta_to_include={}, end_of_epoch=True)"),
    ("speechbrain.processing.features", "InputNormalization._save",
     "(self, path)"),
    ("speechbrain.lobes.models.ECAPA_TDNN", "length_to_mask",
     "(length, max_len=None, dtype=None, device=None)"),
    ("speechbrain.lobes.models.Xvector", "Xvector.forward",
     "(self, x, lens=None)"),
    ("speechbrain.nnet.pooling", "StatisticsPooling.forward",
     "(self, x, lengths=None)"),
    ("speechbrain.processing.features", "STFT.forward", "(self, x)"),
    ("speechbrain.nnet.CNN", "Conv1d._manage_padding",
     "(self, x, kernel_size: int, dilation: int, stride: int)"),
)  # fmt: skip

# Attributes of a global InputNormalization set by sb_private.normalization
NORMALIZATION_ATTRIBUTES = ("count", "glob_mean", "glob_std", "epsilon")


def check_private_api():
    """The differences between ``PRIVATE_API`` and the installed SpeechBrain.

    Returns
    -------
    list of str
        One line per missing name or changed signature; empty when the
        installed SpeechBrain matches.

    Example
    -------
    >>> check_private_api()
    []
    """
    problems = []
    for module_name, path, expected in PRIVATE_API:
        obj = importlib.import_module(module_name)
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            problems.append(f"{module_name}.{path} is gone")
            continue
        found = str(inspect.signature(obj))
        if found != expected:
            problems.append(
                f"{module_name}.{path}{found} (this package expects "
                f"{path}{expected})"
            )
    from speechbrain.processing.features import InputNormalization

    norm = InputNormalization(norm_type="global", std_norm=False)
    for name in NORMALIZATION_ATTRIBUTES:
        if not hasattr(norm, name):
            problems.append(f"InputNormalization has no attribute {name!r}")
    return problems
