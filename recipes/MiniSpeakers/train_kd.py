#!/usr/bin/env python3
"""Distils a frozen teacher into a small student, scores and publishes it.

    python train_kd.py hparams/trkd.yaml --data_folder=PATH

The teacher (``teacher_source``: a folder published by ``train_teacher.py``
or any SpeechBrain pretrained speaker folder / hub id) stays frozen; the
student's classes follow the teacher's label encoder. The loss is the task
loss plus the YAML's ``distill_terms`` (``nokd.yaml``, ``kd.yaml``,
``dkd.yaml``, ``trkd.yaml``). After training, the trial list is scored for
teacher and student (cosine, EER, minDCF) and the student is published in
``pretrained_folder``, then reloaded with ``EncoderClassifier`` to check
that its embeddings equal the training-time ones.
"""

import logging
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from mini_prepare import prepare_corpus

from speechbrain_kd.data import prepare_datasets
from speechbrain_kd.model_size import count_parameters
from speechbrain_kd.publish import evaluate_and_publish
from speechbrain_kd.teachers import check_num_classes, load_teacher
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

    # Linked afresh in save_folder/teacher, one process at a time
    teacher = load_teacher(hparams, run_opts)
    label_encoder = teacher.label_encoder
    check_num_classes(hparams, label_encoder, hparams["teacher_source"])
    datasets = prepare_datasets(hparams, label_encoder)
    brain = make_brain(hparams, run_opts, teacher)
    logger.info(
        "Teacher %s: %d parameters; student: %d parameters (%.1f %%)",
        hparams["teacher_source"],
        count_parameters(teacher.encoder.mods.embedding_model),
        count_parameters(brain.modules.embedding_model),
        100
        * count_parameters(brain.modules.embedding_model)
        / count_parameters(teacher.encoder.mods.embedding_model),
    )
    fit(brain, datasets, hparams)
    evaluate_and_publish(
        brain,
        hparams_file,
        overrides,
        label_encoder,
        datasets,
        card={
            "title": hparams.get(
                "card_title", "Distilled ECAPA-TDNN student (speechbrain_kd)"
            ),
            "distillation": ", ".join(t.name for t in brain.terms)
            or "none (task loss)",
            "teacher": hparams["teacher_source"],
            "training data": hparams["train_csv"],
        },
        teacher=teacher,
    )
