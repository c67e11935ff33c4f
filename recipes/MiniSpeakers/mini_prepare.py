"""Prepares the corpus of a MiniSpeakers recipe: mini, synthetic or so762.

``prepare_corpus`` is what the recipes run. The mini corpus' own
preparation (``prepare_mini``, ``check_data_folder``: LibriSpeech samples
+ Arabic Speech Commands) is in ``shared_prepare.py``, which
``so762_prepare.py`` also uses; its names are importable from here too.
"""

from shared_prepare import (
    ARABIC,
    EXPECTED,
    LIBRI,
    OPTS_FILE,
    OUTPUTS,
    check_data_folder,
    prepare_mini,
)
from so762_prepare import prepare_so762

__all__ = [
    "ARABIC",
    "EXPECTED",
    "LIBRI",
    "OPTS_FILE",
    "OUTPUTS",
    "check_data_folder",
    "prepare_corpus",
    "prepare_mini",
]


def prepare_corpus(hparams):
    """Prepares the corpus a recipe YAML asks for (run on the main process).

    Writes the manifests named by ``train_csv``, ``valid_csv``,
    ``test_csv`` and ``verification_file`` (all in ``prep_folder``):

    - ``corpus: mini``: from the real mini corpus in ``data_folder``, with
      the options of ``prep_opts``;
    - ``corpus: synthetic``: generates (once) the espeak-ng synthetic corpus
      into ``data_folder``, with the options of ``synthetic_opts`` (see
      ``speechbrain_kd.synthetic.prepare_synthetic``);
    - ``corpus: so762``: the speechocean762 benchmark (``so762_folder``)
      with the mini corpus' speakers (``data_folder``), options
      ``so762_opts`` (see ``so762_prepare.prepare_so762``).
    """
    corpus = hparams.get("corpus", "mini")
    if corpus == "mini":
        prepare_mini(
            hparams["data_folder"],
            hparams["prep_folder"],
            **hparams.get("prep_opts", {}),
        )
    elif corpus == "synthetic":
        from speechbrain_kd.synthetic import prepare_synthetic

        prepare_synthetic(
            hparams["data_folder"],
            hparams["prep_folder"],
            **hparams.get("synthetic_opts", {}),
        )
    elif corpus == "so762":
        if not hparams.get("so762_folder"):
            raise ValueError(
                "corpus so762 needs so762_folder (the speechocean762 folder "
                "with WAVE/, train/ and test/); data_folder stays the mini "
                "corpus"
            )
        prepare_so762(
            hparams["so762_folder"],
            hparams["data_folder"],
            hparams["prep_folder"],
            mini_opts=hparams.get("prep_opts", {}),
            **hparams.get("so762_opts", {}),
        )
    else:
        raise ValueError(
            f"corpus must be 'mini', 'synthetic' or 'so762', got {corpus!r}"
        )
