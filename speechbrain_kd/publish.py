"""Scores a trained model, then publishes it as a SpeechBrain folder.

``evaluate_and_publish`` scores the teacher and the trained model on the
trial lists (``verify``), writes the model as a folder that
``EncoderClassifier.from_hparams(source=DIR)`` loads, with a model card,
the cosine-score thresholds and a score calibration
(``speechbrain_kd.export.export_pretrained``), and reloads it to check
that its embeddings are the training-time ones (``check_export``).
"""

import logging
import os

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_kd.export import check_export, export_pretrained
from speechbrain_kd.scoring import (
    extract_embeddings,
    published_thresholds,
    trial_lists,
    verify,
)

logger = logging.getLogger(__name__)


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
    # Same audio through both paths, before the folder replaces dest: the
    # training-time encoder and the export loaded by EncoderClassifier.
    loader = make_dataloader(datasets["test"], batch_size=4)
    batch = next(iter(loader))
    wavs, lens = batch.sig
    found = {}

    def round_trip(folder):
        found["diff"] = check_export(
            folder,
            lambda w, ln: brain.encode(w, ln),
            wavs,
            lens,
            savedir=os.path.join(hparams["output_folder"], "reload_check"),
            device=brain.device,
        )

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
        check=round_trip,
    )
    logger.info(
        "Reloaded %s with EncoderClassifier.from_hparams: embeddings match "
        "(max abs diff %.2e)",
        dest,
        found["diff"],
    )
    return dest


def card_figures(result, prefix=""):
    """The model-card lines of a ``verify`` result (EER, minDCF)."""
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
    (``published_thresholds``); none when that
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
    card.update(card_figures(results[name]))
    if "teacher" in results and name != "teacher":
        card.update(card_figures(results["teacher"], "teacher "))
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
