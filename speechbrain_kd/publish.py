"""Scores a trained model, then publishes it as a SpeechBrain folder.

``evaluate_and_publish`` scores the teacher and the trained model on the
trial lists (``verify``), writes the model as a folder that
``EncoderClassifier.from_hparams(source=DIR)`` loads, with a model card,
the cosine-score thresholds and a score calibration
(``speechbrain_kd.export.export_pretrained``), and reloads it to check
that its embeddings are the training-time ones (``check_export``), and
leaves the run's ``record.json`` (``speechbrain_kd.records``).
"""

import logging
import os

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_kd.data import read_csv
from speechbrain_kd.export import check_export, export_pretrained
from speechbrain_kd.model_size import count_parameters, embedding_macs
from speechbrain_kd.records import make_record, write_record
from speechbrain_kd.scoring import (
    extract_embeddings,
    published_thresholds,
    trial_lists,
    verify,
)
from speechbrain_kd.train_log import read_train_log

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
    record_run(brain, results, name)
    return results


def record_run(brain, results, name):
    """Writes ``<output_folder>/record.json`` from the run's score files
    (``save_scores``) and its test manifest (``test_csv``); logs why not
    when the run has neither."""
    hparams = brain.hparams.__dict__
    folder = hparams["output_folder"]
    score_dir = os.path.join(folder, "scores")
    test_csv = hparams.get("test_csv")
    if not (hparams.get("save_scores") and os.path.isdir(score_dir)):
        logger.info("no record.json: the run saved no scores (save_scores)")
        return
    if not test_csv or not os.path.isfile(test_csv):
        logger.info("no record.json: no test_csv %r", test_csv)
        return
    speaker_of = {row["ID"]: row["spk_id"] for row in read_csv(test_csv)}
    method = hparams.get("method")
    default = "no KD" if name != "teacher" else "teacher"
    train_log = hparams.get("train_log")
    record = make_record(
        score_dir,
        speaker_of,
        models=set(results),
        label=method.get("label", default)
        if isinstance(method, dict)
        else default,
        parameters=count_parameters(brain.modules["embedding_model"]),
        macs_3s=embedding_macs(brain.modules),
        seed=hparams.get("seed"),
        epochs=hparams.get("number_of_epochs"),
        history=read_train_log(train_log)
        if train_log and os.path.isfile(train_log)
        else [],
    )
    write_record(folder, record)
