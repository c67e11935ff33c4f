"""Frozen teachers loaded from SpeechBrain pretrained folders.

A teacher is a pretrained speaker folder (``hyperparams.yaml`` with
``compute_features``, ``mean_var_norm``, ``embedding_model``, ``classifier``
and a ``label_encoder``), local or a hub id such as
``speechbrain/spkrec-ecapa-voxceleb``: the same kind of folder that
``speechbrain_kd.export`` writes for teachers and students.
"""

import logging
import os
import re

import torch
from speechbrain.inference.speaker import EncoderClassifier

from speechbrain_kd.taps import LayerTaps

logger = logging.getLogger(__name__)


def local_overrides(source):
    """Overrides that make a downloaded hub folder load from where it is.

    SpeechBrain's hub models (e.g. ``speechbrain/spkrec-ecapa-voxceleb``)
    name their files in the Pretrainer's ``paths`` from a top-level
    ``pretrained_path: <hub id>``, so a local copy of such a folder would
    still be fetched from the hub; pointing ``pretrained_path`` at the
    folder loads the local files (``label_encoder.txt`` included).

    Example
    -------
    >>> folder = getfixture("tmpdir")
    >>> _ = (folder / "hyperparams.yaml").write("pretrained_path: a/b\\n")
    >>> local_overrides(str(folder)) == {"pretrained_path": str(folder)}
    True
    >>> local_overrides("speechbrain/spkrec-ecapa-voxceleb")
    {}
    """
    path = os.path.join(source, "hyperparams.yaml")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        text = f.read()
    if re.search(r"^pretrained_path\s*:", text, flags=re.MULTILINE) is None:
        return {}
    return {"pretrained_path": os.path.abspath(source)}


def checked_logit_scale(source, folder_hparams, logit_scale):
    """The teacher's AAM-softmax scale, checked against its folder's record.

    A folder published by this package records the scale it was trained
    with (``logit_scale`` in its ``hyperparams.yaml``): a YAML value
    (``teacher_logit_scale``) that disagrees is an error, since the same
    temperature would then mean another softening than the one the
    teacher was trained for. A folder without the record (e.g. a hub
    model) keeps the YAML value, and the log says so.

    Arguments
    ---------
    source : str
        The teacher folder or hub id (named in the messages).
    folder_hparams : object
        The loaded ``hyperparams.yaml`` (attributes, or a dict).
    logit_scale : float
        The value given in the YAML.

    Returns
    -------
    float

    Example
    -------
    >>> checked_logit_scale("t", {"logit_scale": 30.0}, 30)
    30.0
    >>> checked_logit_scale("t", {"logit_scale": 32.0}, 30)
    Traceback (most recent call last):
    ...
    ValueError: teacher_logit_scale is 30.0 but the teacher t records...
    """
    if isinstance(folder_hparams, dict):
        recorded = folder_hparams.get("logit_scale")
    else:
        recorded = getattr(folder_hparams, "logit_scale", None)
    logit_scale = float(logit_scale)
    if recorded is None:
        logger.info(
            "The teacher %s does not record its logit scale (no logit_scale "
            "in its hyperparams.yaml): using teacher_logit_scale=%s from the "
            "YAML",
            source,
            logit_scale,
        )
        return logit_scale
    if float(recorded) != logit_scale:
        raise ValueError(
            f"teacher_logit_scale is {logit_scale} but the teacher {source} "
            f"records logit_scale: {float(recorded)} in its hyperparams.yaml "
            "(the AAM-softmax scale it was trained with): set "
            f"--teacher_logit_scale={float(recorded)}"
        )
    return logit_scale


class FrozenTeacher(torch.nn.Module):
    """A pretrained speaker model that stays in eval mode without gradients.

    It is kept out of ``Brain.modules`` so that the optimiser, DDP and
    ``Brain``'s ``.train()`` calls never touch it; ``train()`` is a no-op.

    Arguments
    ---------
    encoder : speechbrain.inference.classifiers.EncoderClassifier
        The loaded pretrained interface.
    logit_scale : float
        Factor turning the classifier outputs into logits: the AAM-softmax
        scale (e.g. 30) for cosine classifiers such as ECAPA's, 1 for
        classifiers that output log-probabilities.
    taps : dict, optional
        ``{alias: submodule path}`` of layers of the embedding model whose
        outputs ``forward`` also returns (see ``speechbrain_kd.taps``).
    """

    def __init__(self, encoder, logit_scale=30.0, taps=None):
        super().__init__()
        self.encoder = encoder
        self.logit_scale = float(logit_scale)
        self.taps = LayerTaps(encoder.mods.embedding_model, taps)
        self.label_encoder = encoder.hparams.label_encoder
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, source, savedir, device="cpu", logit_scale=30.0, taps=None
    ):
        """Loads a pretrained folder or hub id (see ``EncoderClassifier``).

        Raises a clear error when the folder has no usable label encoder,
        which logit distillation needs to align the classes.
        """
        source = str(source)
        hub_id = re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", source) is not None
        if not os.path.isdir(source) and not hub_id:
            raise FileNotFoundError(
                f"Teacher folder {source!r} does not exist; train one with "
                "train_teacher.py, or give a pretrained folder or hub id"
            )
        encoder = EncoderClassifier.from_hparams(
            source=source,
            savedir=savedir,
            run_opts={"device": device},
            overrides=local_overrides(source),
        )
        logit_scale = checked_logit_scale(source, encoder.hparams, logit_scale)
        label_encoder = encoder.hparams.label_encoder
        if label_encoder is None or len(label_encoder) == 0:
            raise ValueError(
                f"Teacher {source!r} has an empty label encoder: its folder "
                "needs label_encoder.ckpt (speechbrain ignores "
                "label_encoder.txt) to align teacher and student classes"
            )
        return cls(encoder, logit_scale=logit_scale, taps=taps)

    def train(self, mode=True):
        """Keeps the teacher in eval mode whatever is asked."""
        del mode
        return super().train(False)

    @property
    def num_classes(self):
        """Number of classes of the teacher's classifier."""
        return len(self.label_encoder)

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """Teacher outputs for distillation.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms at the teacher's sample rate.
        wav_lens : torch.Tensor
            ``[batch]`` relative lengths.

        Returns
        -------
        dict
            ``logits`` ``[batch, classes]``, ``embedding`` ``[batch, dim]``
            and the output of every tapped layer under its alias.
        """
        emb = self.encoder.encode_batch(wavs, wav_lens)
        outputs = self.taps.pop()
        out = self.encoder.mods.classifier(emb)
        outputs["logits"] = self.logit_scale * out.reshape(out.shape[0], -1)
        outputs["embedding"] = emb.reshape(emb.shape[0], -1)
        return {k: v.float() for k, v in outputs.items()}

    @torch.no_grad()
    def encode(self, wavs, wav_lens=None):
        """Embeddings ``[batch, 1, dim]``, as ``EncoderClassifier``."""
        emb = self.encoder.encode_batch(wavs, wav_lens)
        self.taps.pop()
        return emb
