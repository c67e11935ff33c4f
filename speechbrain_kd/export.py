"""Publishing a trained speaker model as a SpeechBrain pretrained folder.

The folder holds ``hyperparams.yaml``, ``embedding_model.ckpt``,
``classifier.ckpt``, ``label_encoder.ckpt``, ``mean_var_norm_emb.ckpt`` and a
model card ``README.md``, so that::

    from speechbrain.inference.speaker import EncoderClassifier
    model = EncoderClassifier.from_hparams(source=DIR, savedir=...)

loads it with no extra code. The model definitions of ``hyperparams.yaml``
are taken from the training YAML itself (references and command-line
overrides resolved), so any architecture a recipe can train can be
published. Teachers and students are published the same way.
"""

import io
import logging
import os
import shutil
import tempfile

import ruamel.yaml
import torch
from hyperpyyaml import resolve_references

from speechbrain_kd.card_thresholds import thresholds_card, thresholds_yaml
from speechbrain_kd.fileio import atomic_write_text, default_mode
from speechbrain_kd.model_size import (
    count_parameters,
    embedding_macs,
    unwrap_module,
)
from speechbrain_kd.sb_private.normalization import (
    fit_embedding_norm,
    save_embedding_norm,
)

logger = logging.getLogger(__name__)

MODEL_KEYS = (
    "compute_features",
    "mean_var_norm",
    "embedding_model",
    "classifier",
)

INFERENCE_TAIL = """
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
  norm_type: global
  std_norm: False

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

modules:
  compute_features: !ref <compute_features>
  mean_var_norm: !ref <mean_var_norm>
  embedding_model: !ref <embedding_model>
  mean_var_norm_emb: !ref <mean_var_norm_emb>
  classifier: !ref <classifier>

# Loads <name>.ckpt of every loadable from the folder given as `source`.
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
  loadables:
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
    label_encoder: !ref <label_encoder>
"""


def model_yaml(hparams_file, overrides=None, keys=MODEL_KEYS, definitions=None):
    """The YAML definitions of ``keys`` in a training YAML, self-contained.

    Arguments
    ---------
    hparams_file : str
        The training HyperPyYAML file.
    overrides : str or dict, optional
        The overrides the run used (as ``sb.parse_arguments`` returns them).
    keys : sequence of str
        Top-level keys to extract.
    definitions : dict, optional
        ``{key: YAML text}`` replacing the training YAML's definition of
        some keys, e.g. the ``embedding_model`` of a pruned student
        (``speechbrain_kd.lobes.dynamic.DynamicECAPA.plain_definition``).

    Returns
    -------
    str
        YAML text with those keys, references resolved, tags kept.
    """
    with open(hparams_file) as f:
        resolved = resolve_references(f, overrides or {})
    yaml = ruamel.yaml.YAML()
    tree = yaml.load(resolved)
    for key, text in (definitions or {}).items():
        if key not in keys:
            raise KeyError(f"definitions[{key}]: {key} is not one of {keys}")
        tree[key] = yaml.load(text)
    missing = [k for k in keys if k not in tree]
    if missing:
        raise KeyError(
            f"{hparams_file} lacks {missing}, needed to publish the model"
        )
    subset = ruamel.yaml.comments.CommentedMap((k, tree[k]) for k in keys)
    out = io.StringIO()
    yaml.dump(subset, out)
    return out.getvalue()


def training_value(hparams_file, overrides, key):
    """The plain value of a top-level ``key`` of a training YAML (with
    the run's overrides), or None when it has none.

    Example
    -------
    >>> import os
    >>> path = os.path.join(getfixture("tmpdir"), "h.yaml")
    >>> _ = open(path, "w").write("logit_scale: 30.0\\nseed: 1\\n")
    >>> training_value(path, {"seed": 2}, "logit_scale")
    30.0
    >>> training_value(path, {}, "margin") is None
    True
    """
    with open(hparams_file) as f:
        resolved = resolve_references(f, overrides or {})
    tree = ruamel.yaml.YAML().load(resolved)
    value = tree.get(key)
    return value if isinstance(value, (int, float)) else None


def export_pretrained(
    dest,
    hparams_file,
    overrides,
    modules,
    label_encoder,
    embeddings=None,
    card=None,
    definitions=None,
    logit_scale=None,
    thresholds=None,
    calibration=None,
    check=None,
):
    """Writes a pretrained folder at ``dest`` (atomically).

    The folder is built in a temporary sibling directory, checked (``check``)
    and renamed into place, so ``dest`` is either the previous complete
    export or the new complete and checked one, never half written.

    Arguments
    ---------
    dest : str
        Destination folder (replaced if it exists).
    hparams_file : str
        Training YAML holding ``compute_features``, ``mean_var_norm``,
        ``embedding_model`` and ``classifier``.
    overrides : str or dict
        Overrides of the run (so that the architecture matches).
    modules : mapping
        Trained ``embedding_model`` and ``classifier`` modules (saved);
        ``compute_features`` too, for the card's MACs (counted on the
        features of 3 s of audio; without it the card says "not counted").
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Class order of the classifier.
    embeddings : torch.Tensor, optional
        ``[N, dim]`` training embeddings to fit ``mean_var_norm_emb``
        (used by ``encode_batch(normalize=True)``).
    card : dict, optional
        Facts for the model card (method, teacher, data, EER...).
    definitions : dict, optional
        ``{key: YAML text}`` replacing the training YAML's definition of
        these keys (see ``model_yaml``): publishes another architecture than
        the one trained, e.g. the plain ECAPA-TDNN a dynamic-width student
        was pruned into.
    logit_scale : float, optional
        The AAM-softmax scale the model was trained with (default: the
        training YAML's ``logit_scale``, if it has one), recorded as
        ``logit_scale`` in ``hyperparams.yaml`` (read back and checked
        when the folder is used as a teacher:
        ``speechbrain_kd.teachers.checked_logit_scale``).
    thresholds : dict, optional
        Cosine-score decision thresholds measured on a trial list
        (``speechbrain_kd.scoring.published_thresholds``: EER, FAR
        1 % and 0.1 % points with their rates, the corpus and the trial
        counts), recorded as ``verification_thresholds`` in
        ``hyperparams.yaml`` and in the model card
        (``speechbrain_kd.card_thresholds.thresholds_yaml``).
    calibration : dict, optional
        A linear score calibration (``a``, ``b``, ``prior``, ``Cllr``,
        ``minCllr``: ``speechbrain_kd.scoring.linear_calibration``),
        recorded as ``score_calibration`` and in the model card.
    check : callable, optional
        Called with the complete temporary folder before it replaces
        ``dest``, e.g. a ``check_export`` round trip; when it raises,
        ``dest`` is left as it was and a ``RuntimeError`` naming ``dest``
        says why.

    Returns
    -------
    str
        ``dest``.
    """
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".export_")
    try:
        # published: the permissions of os.mkdir, not mkdtemp's private 0700
        os.chmod(tmp, default_mode(folder=True))
        header = (
            "# Generated by speechbrain_kd.export from "
            f"{os.path.basename(hparams_file)}\n"
        )
        text = model_yaml(hparams_file, overrides, definitions=definitions)
        if logit_scale is None:
            logit_scale = training_value(hparams_file, overrides, "logit_scale")
        if logit_scale is not None:
            text += (
                "\n# AAM-softmax scale of training: classifier outputs x "
                f"logit_scale = logits\nlogit_scale: {float(logit_scale)}\n"
            )
        text += thresholds_yaml(thresholds, calibration)
        text = header + text + INFERENCE_TAIL
        atomic_write_text(os.path.join(tmp, "hyperparams.yaml"), text)
        for name in ("embedding_model", "classifier"):
            state = unwrap_module(modules[name]).state_dict()
            state = {k: v.detach().cpu() for k, v in state.items()}
            torch.save(state, os.path.join(tmp, f"{name}.ckpt"))
        label_encoder.save(os.path.join(tmp, "label_encoder.ckpt"))
        save_embedding_norm(
            fit_embedding_norm(embeddings),
            os.path.join(tmp, "mean_var_norm_emb.ckpt"),
        )
        atomic_write_text(
            os.path.join(tmp, "README.md"),
            model_card(
                card or {},
                len(label_encoder),
                modules,
                thresholds=thresholds,
                calibration=calibration,
            ),
        )
        if check is not None:
            try:
                check(tmp)
            except Exception as err:
                raise RuntimeError(
                    f"{dest}: not published, the check of the export "
                    f"failed: {err}"
                ) from err
        if os.path.exists(dest):
            old = tempfile.mkdtemp(dir=parent, prefix=".old_export_")
            os.rename(dest, os.path.join(old, "x"))
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Published pretrained folder %s", dest)
    return dest


def model_card(card, num_classes, modules, thresholds=None, calibration=None):
    """Markdown model card of a published folder.

    Holds the embedding model's parameters and MACs (3 s of audio), the
    number of classes, the facts of ``card`` (method, teacher, data, EER,
    ...), how to load the folder and, when given, the decision
    ``thresholds`` and the score ``calibration`` (as ``export_pretrained``
    takes them; ``speechbrain_kd.card_thresholds.thresholds_card``).
    """
    params = count_parameters(modules["embedding_model"])
    macs = embedding_macs(modules)
    macs = f"{macs / 1e6:,.1f} M" if macs is not None else "not counted"
    lines = [
        f"# {card.get('title', 'Speaker embedding model')}",
        "",
        "Published by speechbrain_kd.",
        "",
        "| | |",
        "|---|---|",
        f"| embedding model parameters | {params:,} |",
        f"| MACs per 3 s of audio (features + embedding) | {macs} |",
        f"| classes (training speakers) | {num_classes} |",
    ]
    for key, value in card.items():
        if key != "title":
            lines.append(f"| {key} | {value} |")
    model_class = type(unwrap_module(modules["embedding_model"]))
    needs = "`speechbrain`"
    if model_class.__module__.startswith("speechbrain_kd"):
        needs += (
            " and `speechbrain_kd` (the embedding model is "
            f"`{model_class.__module__}.{model_class.__name__}`)"
        )
    if model_class.__module__.endswith(".wavlm"):
        needs += ", and `transformers` (`pip install speechbrain_kd[hf]`)"
    lines += [
        "",
        "## Use",
        "",
        f"Needs {needs}.",
        "",
        "```python",
        "from speechbrain.inference.speaker import EncoderClassifier",
        "model = EncoderClassifier.from_hparams(source=THIS_FOLDER, "
        "savedir='tmp')",
        "embeddings = model.encode_batch(wavs)  # [batch, 1, dim], 16 kHz",
        "```",
        "",
        "ONNX: `python -m speechbrain_kd.onnx THIS_FOLDER` writes "
        "`embedding_model.onnx` (waveform in, embedding out) and checks it "
        "against PyTorch.",
        "",
    ]
    lines += thresholds_card(thresholds, calibration)
    return "\n".join(lines)


@torch.no_grad()
def check_export(
    dest, encode, wavs, wav_lens, savedir, atol=1e-4, device="cpu"
):
    """Reloads ``dest`` with ``EncoderClassifier`` and compares embeddings.

    The largest absolute difference may be ``atol`` times the largest
    absolute embedding value when that is above 1: float32 rounding grows
    with the values (an x-vector's segment6 output reaches tens), a wrong
    weight or layer does not stay within it.

    Arguments
    ---------
    dest : str
        Published folder.
    encode : callable
        The training-time ``encode(wavs, wav_lens)`` of the same model.
    wavs, wav_lens : torch.Tensor
        A batch of audio to embed both ways.
    savedir : str
        Where ``from_hparams`` links the files.
    atol : float
        Largest difference allowed, absolute up to embedding values of 1,
        relative to the largest absolute value above.
    device : str
        Device of the reloaded model: the one ``encode`` runs on, so that
        both paths use the same kernels (TF32 / cuDNN on GPU).

    Returns
    -------
    float
        The largest absolute difference found.
    """
    from speechbrain.inference.speaker import EncoderClassifier

    loaded = EncoderClassifier.from_hparams(
        source=dest, savedir=savedir, run_opts={"device": str(device)}
    )
    ref = encode(wavs, wav_lens).float().cpu()
    got = loaded.encode_batch(wavs, wav_lens).float().cpu()
    if ref.shape != got.shape:
        raise RuntimeError(
            f"{dest}: reloaded embeddings have shape {tuple(got.shape)}, "
            f"training-time ones {tuple(ref.shape)}"
        )
    diff = float((ref - got).abs().max())
    scale = max(1.0, float(ref.abs().max()))
    if diff > atol * scale:
        raise RuntimeError(
            f"{dest}: reloaded embeddings differ from the training-time ones "
            f"by {diff:.2e} (> {atol} x {scale:.3g}, the largest embedding "
            "value or 1)"
        )
    return diff
