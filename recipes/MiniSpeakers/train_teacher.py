#!/usr/bin/env python3
"""Trains a speaker-embedding teacher and publishes it as a pretrained folder.

    python train_teacher.py hparams/teacher_ecapa.yaml --data_folder=PATH

Prepares the manifests and trial list, trains the model of the YAML with
the AAM-softmax task loss, scores the trial list (cosine, EER, minDCF) and
publishes the model in ``pretrained_folder`` as a folder that
``EncoderClassifier.from_hparams(source=...)`` loads. ``train_kd.py`` takes
that folder as its ``teacher_source``.
"""

import logging
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from mini_prepare import prepare_corpus

from speechbrain_kd.data import prepare_datasets
from speechbrain_kd.publish import evaluate_and_publish
from speechbrain_kd.teachers import check_num_classes, label_encoder_from_csv
from speechbrain_kd.training import fit, make_brain

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)  # torchrun: one per process
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)

    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    sb.utils.distributed.run_on_main(
        prepare_corpus, kwargs={"hparams": hparams}
    )

    label_encoder = label_encoder_from_csv(
        hparams["train_csv"],
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
    )
    check_num_classes(hparams, label_encoder, hparams["train_csv"])
    datasets = prepare_datasets(hparams, label_encoder)
    brain = make_brain(hparams, run_opts)
    fit(brain, datasets, hparams)
    evaluate_and_publish(
        brain,
        hparams_file,
        overrides,
        label_encoder,
        datasets,
        card={
            "title": hparams.get(
                "card_title", "ECAPA-TDNN teacher (speechbrain_kd)"
            ),
            "method": "AAM softmax, no distillation",
            "training data": hparams["train_csv"],
        },
        name="teacher",
    )
