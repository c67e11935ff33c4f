#!/usr/bin/env python3
"""Prunes a trained dynamic-width student into a plain, smaller ECAPA-TDNN.

    python train_kd.py hparams/dyn_trkd.yaml --data_folder=PATH \
        --flops_target=0.5
    python prune_student.py hparams/dyn_trkd.yaml --data_folder=PATH \
        --flops_target=0.5

Give the same YAML and overrides as ``train_kd.py``. The student that
``train_kd.py`` published in ``pretrained_folder`` (a
``speechbrain_kd.lobes.dynamic.DynamicECAPA``, its channels gated by the
learnt widths) is materialised as SpeechBrain's ``ECAPA_TDNN`` with the
pruned channel counts (no masks); its embeddings are checked against the
masked model's, the trial list is scored (``pruned`` in
``verification.json``) and it is published in ``pruned_folder`` like any
student (``EncoderClassifier.from_hparams`` loads it, reload checked).
``pruning.json`` records the widths, the FLOPs (analytic and counted with
``torch.utils.flop_counter``) and the parameters, full and pruned.
"""

import json
import logging
import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from mini_prepare import prepare_corpus
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.inference.speaker import EncoderClassifier

from speechbrain_kd.data import dataio_prep
from speechbrain_kd.export import check_export, export_pretrained
from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.model_size import (
    count_macs,
    count_parameters,
    embedding_macs,
)
from speechbrain_kd.records import read_record, write_record
from speechbrain_kd.scoring import (
    extract_embeddings,
    published_thresholds,
    trial_lists,
    verify,
)

logger = logging.getLogger(__name__)


def load_dynamic_student(folder, savedir, device):
    """The published dynamic student (``EncoderClassifier``) of ``folder``."""
    if not os.path.isfile(os.path.join(folder, "embedding_model.ckpt")):
        raise FileNotFoundError(
            f"pretrained_folder {folder} holds no published student: run "
            "train_kd.py with the same YAML and overrides first"
        )
    student = EncoderClassifier.from_hparams(
        source=folder, savedir=savedir, run_opts={"device": device}
    )
    model = student.mods.embedding_model
    if not callable(getattr(model, "materialise", None)):
        raise TypeError(
            f"{folder}: embedding_model is a {type(model).__name__}, not a "
            "dynamic-width model (embedding_model of the YAML must be "
            "speechbrain_kd.lobes.dynamic.DynamicECAPA)"
        )
    return student


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    device = run_opts.get("device") or "cpu"
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    sb.utils.distributed.run_on_main(
        prepare_corpus, kwargs={"hparams": hparams}
    )
    if not sb.utils.distributed.if_main_process():
        sys.exit(0)
    if "pruned_folder" not in hparams:
        raise KeyError(
            f"{hparams_file} has no pruned_folder (where to publish the "
            "pruned student)"
        )

    student = load_dynamic_student(
        hparams["pretrained_folder"],
        os.path.join(hparams["output_folder"], "prune_source"),
        device,
    )
    dynamic = student.mods.embedding_model.eval()
    plain = dynamic.materialise()
    label_encoder = student.hparams.label_encoder
    label_encoder.expect_len(student.mods.classifier.weight.shape[0])
    datasets = dataio_prep(hparams, label_encoder)

    @torch.no_grad()
    def features(wavs, lens):
        wavs, lens = wavs.to(device), lens.to(device)
        feats = student.mods.compute_features(wavs)
        return student.mods.mean_var_norm(feats, lens), lens

    @torch.no_grad()
    def encode(wavs, lens):
        """Embeddings of the pruned model, as ``EncoderClassifier``."""
        feats, lens = features(wavs, lens)
        return plain(feats, lens)

    # The pruned model equals the masked one (eval mode).
    batch = next(iter(make_dataloader(datasets["test"], batch_size=4)))
    wavs, lens = batch.sig
    feats, lens_d = features(wavs, lens)
    with torch.no_grad():
        diff = (dynamic(feats, lens_d) - plain(feats, lens_d)).abs().max()
    diff = float(diff)
    if diff > 1e-4:
        raise RuntimeError(
            f"The pruned model differs from the masked one by {diff:.2e}"
        )
    logger.info("Pruned model == masked model (max abs diff %.2e)", diff)

    result = verify(encode, datasets["test"], hparams, "pruned")

    widths = dynamic.pruned_widths()
    frames = dynamic.frames
    n_in = dynamic.arch["input_size"]
    facts = {
        "fractions": {
            g: float(dynamic.fraction(g).detach()) for g in dynamic.dynamic
        },
        "full_widths": dynamic.full_widths(),
        "pruned_widths": widths,
        "plain_kwargs": {
            k: v
            for k, v in dynamic.plain_kwargs().items()
            if not isinstance(v, type)
        },
        "frames": frames,
        "macs_full": int(dynamic.macs()),
        "macs_pruned": int(dynamic.macs(widths)),
        "macs_pruned_counted": int(
            count_macs(plain, torch.randn(1, frames, n_in, device=device))
        ),
        "flops_ratio_continuous": float(dynamic.flops_ratio().detach()),
        "params_full": count_parameters(dynamic) - len(dynamic.width),
        "params_pruned": count_parameters(plain),
        "max_abs_diff_masked_vs_pruned": diff,
        "EER": result["EER"],
        "minDCF": result["minDCF"],
    }
    facts["flops_ratio_pruned"] = facts["macs_pruned"] / facts["macs_full"]
    logger.info(
        "Pruned widths %s: %.1f %% of the full student's FLOPs (%d -> %d "
        "MMACs per %d frames), %d -> %d parameters; EER %.3f %%",
        widths,
        100 * facts["flops_ratio_pruned"],
        facts["macs_full"] // 10**6,
        facts["macs_pruned"] // 10**6,
        frames,
        facts["params_full"],
        facts["params_pruned"],
        result["EER"],
    )

    dest = hparams["pruned_folder"]
    valid_loader = make_dataloader(
        datasets["valid"], **hparams["valid_dataloader_opts"]
    )
    valid_emb = extract_embeddings(encode, valid_loader)
    thresholds, calibration = published_thresholds(
        result, trial_lists(hparams)[result["trial_list"]]
    )
    found = {}

    def round_trip(folder):
        found["diff"] = check_export(
            folder,
            encode,
            wavs,
            lens,
            savedir=os.path.join(
                hparams["output_folder"], "pruned_reload_check"
            ),
            device=device,
        )

    export_pretrained(
        dest,
        hparams_file,
        overrides,
        {
            "embedding_model": plain,
            "classifier": student.mods.classifier,
            "compute_features": student.mods.compute_features,  # card MACs
        },
        label_encoder,
        embeddings=torch.stack(list(valid_emb.values())),
        logit_scale=hparams["logit_scale"],
        card={
            "title": "Pruned dynamic-width ECAPA-TDNN student (speechbrain_kd)",
            "widths": ", ".join(f"{g} {w}" for g, w in widths.items()),
            "FLOPs vs full student": f"{facts['flops_ratio_pruned']:.3f}",
            "pruned from": hparams["pretrained_folder"],
            "EER (%)": f"{result['EER']:.3f}",
            "minDCF": f"{result['minDCF']:.4f}",
        },
        definitions={"embedding_model": dynamic.plain_definition()},
        thresholds=thresholds,
        calibration=calibration,
        check=round_trip,
    )
    logger.info(
        "Published %s (plain ECAPA_TDNN); reloaded with "
        "EncoderClassifier.from_hparams: max abs diff %.2e",
        dest,
        found["diff"],
    )
    # last: a pruning.json means a checked pruned folder
    path = os.path.join(hparams["output_folder"], "pruning.json")
    atomic_write_text(path, json.dumps(facts, indent=1) + "\n")
    record = read_record(hparams["output_folder"])
    if record is not None:  # the run's record, for the tables
        record["pruning"] = facts
        record["pruned_parameters"] = facts["params_pruned"]
        record["pruned_macs_3s"] = embedding_macs(  # as every record's
            {"compute_features": student.mods.compute_features,
             "embedding_model": plain}
        )  # fmt: skip
        write_record(hparams["output_folder"], record)
