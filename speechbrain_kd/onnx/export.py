"""Exports a published speaker model's encoder to ONNX and checks it.

The exported graph is the whole ``EncoderClassifier.encode_batch`` path of a
published folder: ``compute_features`` (Fbank, STFT included),
``mean_var_norm`` and ``embedding_model``, so an ONNX Runtime user feeds
16 kHz audio and gets the same embedding as PyTorch (checked to ``tol`` by
``speechbrain_kd.onnx.check``). ``export_onnx`` writes
``embedding_model.onnx`` into the folder and an "ONNX" section into its
model card. The time axis is always dynamic. The batch axis is dynamic
too when the model allows it (``wav`` ``[batch, time]`` plus relative
lengths ``wav_lens`` ``[batch]``, SpeechBrain's convention); models whose
code loops over the batch or sizes tensors from data (SpeechBrain's
``StatisticsPooling`` with lengths, used by the x-vector) are exported for
one utterance at a time (``wav`` ``[1, time]``, no lengths), which is how
embeddings are extracted on device anyway.
"""

import logging
import os
import tempfile

import torch

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.onnx.check import onnx_differences
from speechbrain_kd.onnx.fold import fold_ecapa
from speechbrain_kd.sb_private.export_patches import export_friendly

logger = logging.getLogger(__name__)

ONNX_NAME = "embedding_model.onnx"


class WaveformEncoder(torch.nn.Module):
    """``encode_batch`` of a speaker model as one module: wav -> embedding.

    Arguments
    ---------
    compute_features, mean_var_norm, embedding_model : torch.nn.Module
        The modules of a published folder (``EncoderClassifier.mods``).
    use_lengths : bool
        Whether ``forward`` takes relative lengths (batched export) or one
        unpadded utterance.

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> enc = WaveformEncoder(
    ...     Fbank(n_mels=24),
    ...     InputNormalization(norm_type="sentence", std_norm=False),
    ...     ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], lin_neurons=8),
    ... ).eval()
    >>> enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 8])
    """

    def __init__(
        self, compute_features, mean_var_norm, embedding_model, use_lengths=True
    ):
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm
        self.embedding_model = embedding_model
        self.use_lengths = use_lengths

    def forward(self, wav, wav_lens=None):
        """Embeddings ``[batch, dim]`` of ``wav`` ``[batch, time]``."""
        if not self.use_lengths:
            wav_lens = None
        elif wav_lens is None:
            wav_lens = torch.ones(wav.shape[0], device=wav.device)
        feats = self.compute_features(wav)
        if wav_lens is None:
            ones = torch.ones(feats.shape[0], device=feats.device)
            feats = self.mean_var_norm(feats, ones)
        else:
            feats = self.mean_var_norm(feats, wav_lens)
        emb = self.embedding_model(feats, wav_lens)
        return emb.reshape(emb.shape[0], -1)


def fast_features(compute_features):
    """The graph's front end for a published ``compute_features``.

    A ``speechbrain.lobes.features.Fbank`` with options ``MatmulFbank``
    supports becomes a ``MatmulFbank`` (the same features by two matrix
    products: ~1.4x faster in ONNX Runtime than the DFT convolution,
    ~12x faster than the ONNX DFT operator, ``bench/RESULTS.md``); any
    other module (or an Fbank with other options, logged) is kept.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> type(fast_features(Fbank(n_mels=80))).__name__
    'MatmulFbank'
    >>> type(fast_features(Fbank(deltas=True))).__name__
    'Fbank'
    """
    from speechbrain.lobes.features import Fbank

    from speechbrain_kd.lobes.fbank import MatmulFbank

    if type(compute_features) is not Fbank:
        return compute_features
    try:
        return MatmulFbank.from_fbank(compute_features).eval()
    except ValueError as err:
        logger.info("Keeping SpeechBrain's Fbank in the graph: %s", err)
        return compute_features


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "ONNX export needs onnx, onnxscript and onnxruntime: "
            "pip install speechbrain_kd[onnx]"
        ) from err


def _export(module, args, path, dynamic_shapes, opset):
    with export_friendly():
        torch.onnx.export(
            module,
            args,
            path,
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            input_names=["wav", "wav_lens"][: len(args)],
            output_names=["embedding"],
            external_data=False,
            verbose=False,
        )


def export_onnx(
    source,
    dest=None,
    savedir=None,
    opset=18,
    tol=1e-4,
    sample_rate=16000,
    update_card=True,
    fast_front_end=True,
    fold=True,
):
    """Exports a published folder's encoder to ONNX and checks it.

    Arguments
    ---------
    source : str
        Published folder (anything ``EncoderClassifier.from_hparams``
        loads).
    dest : str, optional
        Output ``.onnx`` path; default ``<source>/embedding_model.onnx``.
    savedir : str, optional
        Where ``from_hparams`` links the files; default a temporary folder.
    opset : int
        ONNX opset (>= 17: the STFT of the features is an ONNX op there).
    tol : float
        Largest |ONNX Runtime - PyTorch| embedding difference accepted on
        the check inputs (white noise and a speech-like signal of 1, 3 and
        7.3 s; a padded batch when batched), relative to the embedding's
        scale (its largest magnitude, at least 1). PyTorch computes the
        spectrum with an FFT, the graph with two DFT matmul stages
        (``MatmulFbank``): both float32, they differ by up to ~1e-3 dB in
        the log-mel features of real speech, ~1e-6 of the embedding
        scale. The reference is always SpeechBrain's own modules
        (``torch.stft``, unfolded model).
    sample_rate : int
        Sample rate of the model's input.
    update_card : bool
        Append an "ONNX" section to ``<source>/README.md`` if it exists.
    fast_front_end : bool
        Export SpeechBrain's Fbank as ``MatmulFbank`` (``fast_features``);
        ``False``: as SpeechBrain computes it, the STFT as a DFT
        convolution (the plain export, for comparisons).
    fold : bool
        Fold ECAPA-TDNN's foldable BatchNorms (``fold_ecapa``) first.

    Returns
    -------
    dict
        ``path``, ``batched`` (dynamic batch + ``wav_lens`` input, else one
        utterance), ``inputs``, ``output``, ``sample_rate``, ``opset`` and
        the differences of ``onnx_differences``.
    """
    _require_onnx()
    from speechbrain.inference.speaker import EncoderClassifier

    if not os.path.isfile(os.path.join(source, "hyperparams.yaml")):
        raise FileNotFoundError(
            f"{source}: not a published folder (no hyperparams.yaml)"
        )
    dest = os.path.abspath(dest or os.path.join(source, ONNX_NAME))
    with tempfile.TemporaryDirectory() as tmp:
        model = EncoderClassifier.from_hparams(
            source=os.path.abspath(source),
            savedir=savedir or os.path.join(tmp, "model"),
            run_opts={"device": "cpu"},
        )
        mods = model.mods
        features = mods.compute_features
        if fast_front_end:
            features = fast_features(features)
        embedding_model = mods.embedding_model.eval()
        if fold:
            embedding_model = fold_ecapa(embedding_model)
        tmp_path = os.path.join(
            os.path.dirname(dest), f".{os.path.basename(dest)}.tmp"
        )
        example = 0.1 * torch.randn(2, 3 * sample_rate)
        lens = torch.tensor([1.0, 0.8])
        batch = torch.export.Dim("batch", min=1, max=1024)
        time = torch.export.Dim.AUTO
        batched = True
        try:
            module = WaveformEncoder(
                features, mods.mean_var_norm, embedding_model
            ).eval()
            _export(
                module,
                (example, lens),
                tmp_path,
                {"wav": {0: batch, 1: time}, "wav_lens": {0: batch}},
                opset,
            )
        except Exception as err:  # noqa: BLE001 - any export failure
            logger.info(
                "Batched export failed (%s); exporting one utterance at a time",
                str(err).splitlines()[0][:200],
            )
            batched = False
            module = WaveformEncoder(
                features,
                mods.mean_var_norm,
                embedding_model,
                use_lengths=False,
            ).eval()
            _export(module, (example[:1],), tmp_path, {"wav": {1: time}}, opset)
        # the reference: the published modules, SpeechBrain's Fbank
        # (torch.stft) included
        reference = WaveformEncoder(
            mods.compute_features,
            mods.mean_var_norm,
            mods.embedding_model,
            use_lengths=batched,
        ).eval()
        try:
            with export_friendly(stft=False):
                diffs = onnx_differences(
                    tmp_path, reference, batched, sample_rate
                )
            if diffs["max_rel_diff"] > tol:
                raise RuntimeError(
                    f"{source}: ONNX embeddings differ from PyTorch by "
                    f"{diffs['max_rel_diff']:.2e} of their scale (> tol "
                    f"{tol}; max abs diff {diffs['max_abs_diff']:.2e})"
                )
            os.replace(tmp_path, dest)
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    inputs = (
        "wav [batch, time] float32, wav_lens [batch] relative lengths"
        if batched
        else "wav [1, time] float32 (one utterance)"
    )
    info = {
        "path": dest,
        "batched": batched,
        "inputs": inputs,
        "output": "embedding [batch, dim]",
        "sample_rate": sample_rate,
        **diffs,
        "opset": opset,
    }
    card = os.path.join(source, "README.md")
    if update_card and os.path.isfile(card):
        _update_card(card, info)
    logger.info(
        "Exported %s (max diff to PyTorch %.2e abs, %.2e of the scale)",
        dest,
        diffs["max_abs_diff"],
        diffs["max_rel_diff"],
    )
    return info


def _update_card(card, info):
    with open(card) as f:
        text = f.read()
    text = text.split("\n## ONNX\n")[0].rstrip("\n") + "\n"
    feed = '{"wav": wav}'
    if info["batched"]:
        feed = '{"wav": wav, "wav_lens": np.ones(len(wav), "float32")}'
    text += "\n".join(
        [
            "",
            "## ONNX",
            "",
            f"`{os.path.basename(info['path'])}`: Fbank features, "
            "normalisation and embedding model in one graph (opset "
            f"{info['opset']}), dynamic time axis; inputs: {info['inputs']}; "
            f"output: {info['output']}. Max |ONNX Runtime - PyTorch| on the "
            f"export check: {info['max_abs_diff']:.1e} "
            f"({info['max_rel_diff']:.1e} of the embedding scale; "
            f"{info['max_cosine_diff']:.1e} after length normalisation).",
            "",
            "```python",
            "import numpy as np, onnxruntime as ort",
            f"sess = ort.InferenceSession('{os.path.basename(info['path'])}')",
            f"emb = sess.run(None, {feed})[0]  # wav: float32 "
            f"[batch, samples] at {info['sample_rate']} Hz",
            "```",
            "",
        ]
    )
    atomic_write_text(card, text)
