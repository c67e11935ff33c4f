#!/usr/bin/env python3
"""Distils a frozen teacher into a student on VoxCeleb; scores, publishes.

    python train_kd.py hparams/trkd.yaml --data_folder=VOX2[,VOX1] \\
        --verification_file=VOX1/meta/veri_test2.txt

The teacher (``teacher_source``: a SpeechBrain pretrained speaker folder or
hub id, e.g. ``speechbrain/spkrec-ecapa-voxceleb``, or a folder published
by ``train_teacher.py``) stays frozen; the student's classes follow the
teacher's label encoder (``unknown_speakers: embedding_only`` for training
speakers it does not know). The loss is the task loss plus the YAML's
``distill_terms`` (``nokd.yaml``, ``kd.yaml``, ``dkd.yaml``,
``trkd.yaml``). After training, every trial list (Vox1-O, and Vox1-E/H
when given) is scored for teacher and student with every back-end of
``scoring`` (cosine, s-norm, as-norm), and the student is published in
``pretrained_folder``.
"""

import logging
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from voxceleb_prepare import prepare_corpus

from speechbrain_kd.data import prepare_datasets
from speechbrain_kd.model_size import count_parameters
from speechbrain_kd.publish import evaluate_and_publish
from speechbrain_kd.teachers import (
    check_num_classes,
    load_teacher,
    student_label_encoder,
)
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

    teacher = load_teacher(hparams, run_opts)
    label_encoder = student_label_encoder(hparams, teacher)
    check_num_classes(hparams, label_encoder, hparams["teacher_source"])
    datasets = prepare_datasets(hparams, label_encoder)
    brain = make_brain(hparams, run_opts, teacher)
    n_t = count_parameters(teacher.encoder.mods.embedding_model)
    n_s = count_parameters(brain.modules.embedding_model)
    logger.info(
        "Teacher %s: %d parameters; student: %d parameters (%.1f %%)",
        hparams["teacher_source"],
        n_t,
        n_s,
        100 * n_s / n_t,
    )
    fit(brain, datasets, hparams)
    evaluate_and_publish(
        brain,
        hparams_file,
        overrides,
        label_encoder,
        datasets,
        card={
            "title": "Distilled ECAPA-TDNN student on VoxCeleb "
            "(speechbrain_kd)",
            "distillation": ", ".join(t.name for t in brain.terms)
            or "none (task loss)",
            "teacher": hparams["teacher_source"],
            "training data": hparams["train_csv"],
        },
        teacher=teacher,
    )
