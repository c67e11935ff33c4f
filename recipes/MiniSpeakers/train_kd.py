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
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from mini_prepare import prepare_corpus

from speechbrain_kd.brain import KDBrain
from speechbrain_kd.data import dataio_prep
from speechbrain_kd.export import count_parameters
from speechbrain_kd.recipe import check_num_classes, publish, verify
from speechbrain_kd.teachers import FrozenTeacher

logger = logging.getLogger(__name__)

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
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

    teacher = FrozenTeacher.from_pretrained(
        hparams["teacher_source"],
        savedir=os.path.join(hparams["save_folder"], "teacher"),
        device=run_opts.get("device", "cpu"),
        logit_scale=hparams["teacher_logit_scale"],
        taps=hparams.get("teacher_taps"),
    )
    label_encoder = teacher.label_encoder
    check_num_classes(hparams, label_encoder, hparams["teacher_source"])
    datasets = dataio_prep(hparams, label_encoder)

    brain = KDBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        teacher=teacher,
    )
    logger.info(
        "Teacher %s: %d parameters; student: %d parameters (%.1f %%)",
        hparams["teacher_source"],
        count_parameters(teacher.encoder.mods.embedding_model),
        count_parameters(brain.modules.embedding_model),
        100
        * count_parameters(brain.modules.embedding_model)
        / count_parameters(teacher.encoder.mods.embedding_model),
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )

    brain.checkpointer.recover_if_possible(min_key="ErrorRate")
    if sb.utils.distributed.if_main_process():
        teacher_result = verify(
            teacher.encode, datasets["test"], hparams, "teacher"
        )
        result = verify(brain.encode, datasets["test"], hparams, "student")
        method = ", ".join(t.name for t in brain.terms) or "none (task loss)"
        publish(
            brain,
            hparams_file,
            overrides,
            label_encoder,
            datasets,
            card={
                "title": "Distilled ECAPA-TDNN student (speechbrain_kd)",
                "distillation": method,
                "teacher": hparams["teacher_source"],
                "training data": hparams["train_csv"],
                "EER (%)": f"{result['EER']:.2f}",
                "minDCF": f"{result['minDCF']:.4f}",
                "teacher EER (%)": f"{teacher_result['EER']:.2f}",
            },
        )
