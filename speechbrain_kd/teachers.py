"""Frozen teachers, loaded from SpeechBrain pretrained folders, and classes.

A teacher is a pretrained speaker folder (``hyperparams.yaml`` with
``compute_features``, ``mean_var_norm``, ``embedding_model``, ``classifier``
and a ``label_encoder``), local or a hub id such as
``speechbrain/spkrec-ecapa-voxceleb``: the same kind of folder that
``speechbrain_kd.export`` writes for teachers and students.

- ``FrozenTeacher``: the teacher as a module (logits, embedding, taps);
- ``load_teacher``: the teacher of a recipe's ``teacher_source``;
- ``student_label_encoder``: the student's classes, the teacher's (or its
  own in embedding-only distillation); ``label_encoder_from_csv`` and
  ``check_num_classes`` for a teacher's own classes.
"""

import logging
import os
import re
import shutil

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.speaker import EncoderClassifier

from speechbrain_kd.data import read_csv
from speechbrain_kd.taps import LayerTaps

logger = logging.getLogger(__name__)

UNKNOWN_SPEAKER_MODES = ("error", "embedding_only")


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


def label_encoder_from_csv(csv_path, save_path):
    """Speaker label encoder over the ``spk_id`` of a manifest (sorted).

    Written by the main process only and read by every process
    (``CategoricalEncoder.load_or_create``, safe under ``torchrun``). A
    file left by a run on other speakers is an error naming it.
    """
    speakers = sorted({row["spk_id"] for row in read_csv(csv_path)})
    encoder = CategoricalEncoder()
    encoder.load_or_create(save_path, from_iterables=[speakers])
    saved = [encoder.ind2lab[i] for i in range(len(encoder))]
    if saved != speakers:
        raise ValueError(
            f"{save_path} holds {len(saved)} labels that are not the "
            f"{len(speakers)} speakers of {csv_path} in sorted order (a run "
            "on other data wrote it): remove it or use another output_folder"
        )
    return encoder


def check_num_classes(hparams, label_encoder, origin):
    """Clear error when ``out_n_neurons`` does not match the classes."""
    num_classes = len(label_encoder)
    if hparams["out_n_neurons"] != num_classes:
        raise ValueError(
            f"out_n_neurons is {hparams['out_n_neurons']} but {origin} has "
            f"{num_classes} classes: run again with "
            f"--out_n_neurons={num_classes}"
        )
    label_encoder.expect_len(num_classes)


def load_teacher(hparams, run_opts):
    """The frozen teacher of ``teacher_source`` (folder or hub id).

    Uses ``teacher_logit_scale`` (checked against the scale the teacher
    folder records, ``teachers.checked_logit_scale``) and the optional
    ``teacher_taps``; files
    are linked into ``<save_folder>/teacher``. SpeechBrain reuses files
    linked there by an earlier run, even of another ``teacher_source``, so
    the folder is emptied and linked afresh, by one process at a time
    under ``torchrun``.
    """
    savedir = os.path.join(hparams["save_folder"], "teacher")
    if sb.utils.distributed.if_main_process():
        shutil.rmtree(savedir, ignore_errors=True)
    sb.utils.distributed.ddp_barrier()
    teacher = None
    for rank in range(int(os.environ.get("WORLD_SIZE", 1))):
        if rank == int(os.environ.get("RANK", 0)):
            teacher = FrozenTeacher.from_pretrained(
                hparams["teacher_source"],
                savedir=savedir,
                device=(run_opts or {}).get("device", "cpu"),
                logit_scale=hparams["teacher_logit_scale"],
                taps=hparams.get("teacher_taps"),
            )
        sb.utils.distributed.ddp_barrier()
    student_scale = float(hparams.get("logit_scale", teacher.logit_scale))
    if student_scale != teacher.logit_scale:
        logger.warning(
            "The student's logit_scale (%s) differs from the teacher's (%s): "
            "both sides' logits are their own scaled cosines, so the same T "
            "softens them differently (state it in the YAML if intended)",
            student_scale,
            teacher.logit_scale,
        )
    return teacher


def student_label_encoder(hparams, teacher):
    """The student's classes: the teacher's label encoder.

    Logit distillation compares teacher and student class by class, so the
    student's classifier follows the teacher's label encoder. When some
    training speakers are unknown to the teacher, ``unknown_speakers``
    decides:

    - ``error`` (default): a clear error naming them;
    - ``embedding_only``: the student gets its own classes (the speakers of
      ``train_csv``, saved in ``<save_folder>/label_encoder.txt``) and the
      method's ``distill_terms`` are replaced by ``embedding_distill_terms``
      (terms on ``student_embedding`` / ``teacher_embedding`` only, e.g. a
      cosine loss); a run without distillation (nokd) stays without.
      ``hparams["embedding_only"]`` is then set: ``make_brain`` lets the
      student's class count differ from the teacher's and the teacher's
      logits (over other classes) are dropped.

    Arguments
    ---------
    hparams : dict
        The loaded YAML (``distill_terms`` may be replaced in place).
    teacher : speechbrain_kd.teachers.FrozenTeacher
        The teacher.

    Returns
    -------
    speechbrain.dataio.encoder.CategoricalEncoder
    """
    mode = hparams.get("unknown_speakers", "error")
    if mode not in UNKNOWN_SPEAKER_MODES:
        raise ValueError(
            f"unknown_speakers must be one of {list(UNKNOWN_SPEAKER_MODES)}, "
            f"got {mode!r}"
        )
    speakers = {row["spk_id"] for row in read_csv(hparams["train_csv"])}
    known = teacher.label_encoder.lab2ind
    unknown = sorted(s for s in speakers if s not in known)
    if not unknown:
        return teacher.label_encoder
    if mode == "error":
        raise ValueError(
            f"{len(unknown)} of the {len(speakers)} speakers of "
            f"{hparams['train_csv']} are unknown to the teacher "
            f"{hparams['teacher_source']} ({len(known)} classes), e.g. "
            f"{unknown[:5]}. Logit distillation needs the teacher's classes: "
            "train on speakers the teacher knows, or set "
            "--unknown_speakers=embedding_only to distil the teacher's "
            "embedding only (the student then has its own classifier over "
            "the training speakers)"
        )
    encoder = label_encoder_from_csv(
        hparams["train_csv"],
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
    )
    if hparams.get("distill_terms"):
        terms = hparams.get("embedding_distill_terms")
        if not terms:
            raise ValueError(
                "unknown_speakers is embedding_only but the YAML has no "
                "embedding_distill_terms (terms on student_embedding / "
                "teacher_embedding) to replace the logit distill_terms"
            )
        hparams["distill_terms"] = terms
    hparams["embedding_only"] = True
    logger.warning(
        "%d training speakers are unknown to the teacher: embedding-only "
        "distillation (%s), student classifier over the %d training "
        "speakers",
        len(unknown),
        ", ".join(hparams.get("distill_terms") or {}) or "no distillation",
        len(encoder),
    )
    return encoder
