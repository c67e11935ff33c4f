"""Glue shared by the recipe scripts: classes, scoring and publishing.

The recipe scripts (``recipes/*/train_teacher.py``, ``train_kd.py``) stay
short: parse arguments, prepare data, build ``KDBrain`` from the YAML, fit,
then call ``verify`` and ``publish`` from here.
"""

import json
import logging
import os

import speechbrain as sb
import torch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_kd.data import atomic_write_text, read_csv
from speechbrain_kd.export import check_export, export_pretrained
from speechbrain_kd.verification import evaluate_trials, extract_embeddings

logger = logging.getLogger(__name__)


def label_encoder_from_csv(csv_path, save_path):
    """Speaker label encoder over the ``spk_id`` of a manifest (sorted)."""
    encoder = CategoricalEncoder()
    speakers = sorted({row["spk_id"] for row in read_csv(csv_path)})
    encoder.update_from_iterable(speakers)
    encoder.save(save_path)
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


def verify(encode, test_set, hparams, name):
    """Cosine-scores the trial list with ``encode``; logs and writes results.

    Arguments
    ---------
    encode : callable
        ``encode(wavs, wav_lens) -> [batch, 1, dim]`` embeddings.
    test_set : DynamicItemDataset
        Test utterances (``id``, ``sig``).
    hparams : dict
        Needs ``verification_file``, ``test_dataloader_opts``,
        ``output_folder`` and ``p_target``.
    name : str
        Name of the model in the logs and in ``verification.json``.

    Returns
    -------
    dict
        ``EER`` (percent), ``minDCF`` and trial counts.
    """
    # Sorted by duration, so that batches hold (almost) no padding.
    test_set = test_set.filtered_sorted(sort_key="duration")
    loader = make_dataloader(test_set, **hparams["test_dataloader_opts"])
    embeddings = extract_embeddings(encode, loader)
    result = evaluate_trials(
        embeddings, hparams["verification_file"], hparams["p_target"]
    )
    logger.info(
        "%s: EER %.2f %%, minDCF(p=%.2g) %.4f (normalised %.4f) on %d + %d "
        "trials",
        name,
        result["EER"],
        hparams["p_target"],
        result["minDCF"],
        result["minDCF_norm"],
        result["target_trials"],
        result["nontarget_trials"],
    )
    path = os.path.join(hparams["output_folder"], "verification.json")
    previous = {}
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
    previous[name] = result
    atomic_write_text(path, json.dumps(previous, indent=1) + "\n")
    return result


def publish(brain, hparams_file, overrides, label_encoder, datasets, card):
    """Exports the Brain's model and checks the ``from_hparams`` round trip.

    ``mean_var_norm_emb`` is fitted on the validation embeddings (held-out
    audio of the training speakers). Only the main process writes.

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
