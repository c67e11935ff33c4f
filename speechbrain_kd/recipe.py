"""Glue shared by the recipe scripts: teacher, classes, training, scoring.

The recipe scripts (``recipes/*/train_teacher.py``, ``train_kd.py``,
``verify.py``) stay short: parse arguments, prepare data, then::

    teacher = load_teacher(hparams, run_opts)
    label_encoder = student_label_encoder(hparams, teacher)
    datasets = prepare_datasets(hparams, label_encoder)
    brain = make_brain(hparams, run_opts, teacher)
    fit(brain, datasets, hparams)
    evaluate_and_publish(brain, hparams_file, overrides, label_encoder,
                         datasets, card, teacher)

Scoring (``verify``) embeds the test utterances once and scores every
trial list of ``trial_lists`` with every back-end of ``scoring``: cosine,
z/t/s-norm and adaptive s-norm against a cohort of training utterances,
PLDA (see ``speechbrain_kd.scoring``).
"""

import logging
import os
import shutil

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedData
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_kd.brain import KDBrain
from speechbrain_kd.data import read_csv
from speechbrain_kd.export import check_export, export_pretrained
from speechbrain_kd.scoring import (
    extract_embeddings,
    published_thresholds,
    trial_lists,
    verify,
)
from speechbrain_kd.teachers import FrozenTeacher

logger = logging.getLogger(__name__)

UNKNOWN_SPEAKER_MODES = ("error", "embedding_only")


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


def build_augmenter(
    noise_csv=None,
    rir_csv=None,
    add_noise=None,
    add_reverb=None,
    extra=(),
    augmenter=None,
):
    """SpeechBrain's speaker-recipe waveform augmentation, or None.

    Arguments
    ---------
    noise_csv, rir_csv : str, optional
        CSVs of noise recordings / room impulse responses, as
        ``speechbrain.augment.preparation.prepare_csv`` writes them. With
        neither, augmentation is off (None).
    add_noise, add_reverb : callable
        ``AddNoise`` / ``AddReverb`` partials (``!name:``); the CSV is
        passed as ``csv_file``.
    extra : sequence
        Augmentations that need no data (``DropFreq``, ``DropChunk``),
        used only when a CSV is given.
    augmenter : callable
        An ``Augmenter`` partial; all augmentations are applied (in
        parallel, with ``parallel_augment``).

    Returns
    -------
    speechbrain.augment.augmenter.Augmenter or None
    """
    if not noise_csv and not rir_csv:
        return None
    augmentations = []
    for csv_path, make, key in (
        (noise_csv, add_noise, "noise_csv"),
        (rir_csv, add_reverb, "rir_csv"),
    ):
        if not csv_path:
            continue
        if not os.path.isfile(csv_path):
            raise FileNotFoundError(
                f"{key} {csv_path!r} does not exist (a CSV of audio files, "
                "see speechbrain.augment.preparation.prepare_csv)"
            )
        augmentations.append(make(csv_file=csv_path))
    augmentations += list(extra or ())
    n = len(augmentations)
    return augmenter(
        augmentations=augmentations, min_augmentations=n, max_augmentations=n
    )


class AugmentKDBrain(KDBrain):
    """``KDBrain`` that augments the training waveforms with ``wav_augment``.

    ``wav_augment`` (an ``Augmenter`` or None, see ``build_augmenter``)
    transforms each training batch before teacher and student see it, as
    in SpeechBrain's ECAPA recipe; with ``concat_original`` and parallel
    augmentations the batch grows and the labels are replicated.
    """

    def compute_forward(self, batch, stage):
        """Augments (training only), then ``KDBrain.compute_forward``."""
        augment = getattr(self.hparams, "wav_augment", None)
        if stage == sb.Stage.TRAIN and augment is not None:
            batch = batch.to(self.device)
            wavs, lens = batch.sig
            wavs, lens = augment(wavs, lens)
            labels, label_lens = batch.spk_id_encoded
            batch.sig = PaddedData(wavs, lens)
            batch.spk_id_encoded = PaddedData(
                augment.replicate_labels(labels),
                augment.replicate_labels(label_lens),
            )
        preds = super().compute_forward(batch, stage)
        if getattr(self.hparams, "embedding_only", False):
            # The teacher's classes are not the student's: only its
            # embedding is distilled.
            preds.pop("teacher_logits", None)
        return preds


def make_brain(hparams, run_opts, teacher=None):
    """The recipe's Brain (``AugmentKDBrain``) from the loaded YAML.

    In embedding-only mode (see ``student_label_encoder``) the student has
    its own classes, so ``out_n_neurons`` is not checked against the
    teacher's class count (it was checked against the training speakers).
    """
    if hparams.get("embedding_only"):
        hparams = dict(hparams, out_n_neurons=None)
    return AugmentKDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        teacher=teacher,
    )


def fit(brain, datasets, hparams):
    """Trains, then loads the checkpoint with the lowest error rate.

    With ``teacher_cache: {enabled: True}``, the teacher's outputs are read from
    the cache (built first if needed: ``speechbrain_kd.teacher_cache``)
    and the teacher is off the device during training.
    """
    spec = hparams.get("teacher_cache") or {}
    cached = spec.get("enabled") and brain.teacher is not None
    if cached and brain.terms:
        from speechbrain_kd.teacher_cache import prepare_teacher_cache

        brain.use_teacher_cache(
            prepare_teacher_cache(
                hparams,
                brain.teacher,
                brain.teacher.label_encoder,
                progressbar=not brain.noprogressbar,
            )
        )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    brain.teacher_to_device()


def publish(
    brain,
    hparams_file,
    overrides,
    label_encoder,
    datasets,
    card,
    thresholds=None,
    calibration=None,
):
    """Exports the Brain's model and checks the ``from_hparams`` round trip.

    ``mean_var_norm_emb`` is fitted on the validation embeddings (held-out
    audio of the training speakers). Only the main process writes.
    ``thresholds`` and ``calibration`` (optional) go to
    ``export_pretrained`` (``verification_thresholds`` and
    ``score_calibration`` of ``hyperparams.yaml``, and the model card).

    Returns
    -------
    str
        The published folder.
    """
    hparams = brain.hparams.__dict__
    dest = hparams["pretrained_folder"]
    if not sb.utils.distributed.if_main_process():
        return dest
    valid_loader = make_dataloader(
        datasets["valid"], **hparams["valid_dataloader_opts"]
    )
    valid_emb = extract_embeddings(brain.encode, valid_loader)
    export_pretrained(
        dest,
        hparams_file,
        overrides,
        brain.modules,
        label_encoder,
        embeddings=torch.stack(list(valid_emb.values())),
        card=card,
        logit_scale=brain.logit_scale,
        thresholds=thresholds,
        calibration=calibration,
    )
    # Same audio through both paths: the training-time encoder and the
    # published folder loaded by EncoderClassifier.
    loader = make_dataloader(datasets["test"], batch_size=4)
    batch = next(iter(loader))
    wavs, lens = batch.sig
    diff = check_export(
        dest,
        lambda w, ln: brain.encode(w, ln),
        wavs,
        lens,
        savedir=os.path.join(hparams["output_folder"], "reload_check"),
        device=brain.device,
    )
    logger.info(
        "Reloaded %s with EncoderClassifier.from_hparams: embeddings match "
        "(max abs diff %.2e)",
        dest,
        diff,
    )
    return dest


def _card_figures(result, prefix=""):
    label = f"{result['trial_list']}, {result['scoring']}"
    return {
        f"{prefix}EER (%)": f"{result['EER']:.3f} ({label})",
        f"{prefix}minDCF": f"{result['minDCF']:.4f}",
    }


def evaluate_and_publish(
    brain,
    hparams_file,
    overrides,
    label_encoder,
    datasets,
    card,
    teacher=None,
    name="student",
):
    """Scores teacher (unless ``evaluate_teacher: False``) and the Brain's
    model on the trial lists, then publishes the model with a model card
    holding the figures (main process only).

    The folder also records the cosine-score thresholds (EER, FAR 1 %,
    FAR 0.1 %) and a linear score calibration measured on the model's
    cosine scores of the first trial list
    (``speechbrain_kd.scoring.published_thresholds``); none when that
    list was not scored with cosine.

    Returns
    -------
    dict or None
        ``{"teacher": ..., name: ...}`` as ``verify`` returns them (None on
        other processes).
    """
    if not sb.utils.distributed.if_main_process():
        return None
    hparams = brain.hparams.__dict__
    results = {}
    card = dict(card)
    if teacher is not None and hparams.get("evaluate_teacher", True):
        results["teacher"] = verify(
            teacher.encode, datasets["test"], hparams, "teacher"
        )
    results[name] = verify(brain.encode, datasets["test"], hparams, name)
    card.update(_card_figures(results[name]))
    if "teacher" in results:
        card.update(_card_figures(results["teacher"], "teacher "))
    first = results[name]["trial_list"]
    thresholds, calibration = published_thresholds(
        results[name], trial_lists(hparams)[first]
    )
    publish(
        brain,
        hparams_file,
        overrides,
        label_encoder,
        datasets,
        card,
        thresholds=thresholds,
        calibration=calibration,
    )
    return results
