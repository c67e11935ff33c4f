#!/usr/bin/env python3
"""Scores any pretrained speaker model on the VoxCeleb trial lists.

    python verify.py hparams/verify.yaml --data_folder=VOX2[,VOX1] \\
        --verification_file=VOX1/meta/veri_test2.txt \\
        --model_source=speechbrain/spkrec-ecapa-voxceleb

The counterpart of SpeechBrain's ``speaker_verification_cosine.py`` and
``speaker_verification_plda.py``, for any folder ``EncoderClassifier``
loads (a hub id, a downloaded hub folder, a teacher or a student published
by this project): embeds every utterance of every trial list once, then
scores each list with every back-end of ``scoring`` (cosine, z/t/s-norm,
as-norm, plda) and writes ``verification.json``.
"""

import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from voxceleb_prepare import prepare_corpus

from speechbrain_kd.data import manifest_dataset, read_csv
from speechbrain_kd.scoring import verify
from speechbrain_kd.teachers import FrozenTeacher

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
    if sb.utils.distributed.if_main_process():
        model = FrozenTeacher.from_pretrained(
            hparams["model_source"],
            savedir=os.path.join(hparams["output_folder"], "model"),
            device=run_opts.get("device", "cpu"),
        )
        test_set = manifest_dataset(read_csv(hparams["test_csv"]), hparams)
        verify(model.encode, test_set, hparams, hparams["model_name"])
