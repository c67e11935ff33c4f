"""Scoring of a model on the recipe's trial lists (``verify``).

``verify`` embeds the test utterances once and scores every trial list of
``trial_lists`` with every back-end of ``scoring`` (``scoring_methods``):
cosine, z/t/s-norm and adaptive s-norm against a cohort of training
utterances, PLDA trained on training utterances (``backend_rows``), then
logs the figures and writes ``verification.json``.
"""

import json
import logging
import os
import random

import torch
from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_kd.data import manifest_dataset, read_csv, read_trials
from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.scoring.embeddings import extract_embeddings
from speechbrain_kd.scoring.metrics import detection_metrics
from speechbrain_kd.scoring.plda import train_plda
from speechbrain_kd.scoring.scores import (
    SCORING_METHODS,
    score_trials,
    write_scores,
)

logger = logging.getLogger(__name__)


def backend_rows(hparams, num_utts):
    """``num_utts`` training rows drawn at random (seeded), for the cohort
    of score normalisation and the PLDA training set."""
    rows = read_csv(hparams["train_csv"])
    opts = hparams.get("cohort_opts") or {}
    random.Random(opts.get("seed", 1234)).shuffle(rows)
    return rows[:num_utts]


def scoring_methods(hparams):
    """The back-ends of ``scoring`` (default: cosine), checked."""
    methods = hparams.get("scoring") or ["cosine"]
    if isinstance(methods, str):
        methods = [methods]
    bad = [m for m in methods if m not in SCORING_METHODS]
    if bad:
        raise ValueError(
            f"scoring: unknown back-ends {bad}; expected some of "
            f"{list(SCORING_METHODS)}"
        )
    return list(methods)


def trial_lists(hparams):
    """``{name: path}`` of ``trial_lists`` (or ``verification_file``)."""
    lists = hparams.get("trial_lists")
    if not lists:
        return {"trials": hparams["verification_file"]}
    if not isinstance(lists, dict):
        raise ValueError(
            f"trial_lists must map names to trial files, got {lists!r}"
        )
    return dict(lists)


def _backends(encode, hparams, methods):
    """Cohort embeddings and trained PLDA the methods need."""
    cohort_opts = hparams.get("cohort_opts") or {}
    plda_opts = dict(hparams.get("plda_opts") or {})
    needs_cohort = any(m.endswith("-norm") for m in methods)
    n_cohort = int(cohort_opts.get("num_utts", 20000)) if needs_cohort else 0
    n_plda = int(plda_opts.pop("num_utts", 100000)) if "plda" in methods else 0
    out = {"cohort": None, "plda": None, "top_k": cohort_opts.get("top_k")}
    if not n_cohort and not n_plda:
        return out
    rows = backend_rows(hparams, max(n_cohort, n_plda))
    loader = make_dataloader(
        manifest_dataset(rows, hparams).filtered_sorted(sort_key="length"),
        **hparams["test_dataloader_opts"],
    )
    embeddings = extract_embeddings(encode, loader)
    ids = [row["ID"] for row in rows]
    if n_cohort:
        out["cohort"] = torch.stack([embeddings[i] for i in ids[:n_cohort]])
        logger.info("Score-normalisation cohort: %d training rows", n_cohort)
    if n_plda:
        plda_rows = rows[:n_plda]
        out["plda"] = train_plda(
            torch.stack([embeddings[r["ID"]] for r in plda_rows]),
            [r["spk_id"] for r in plda_rows],
            **plda_opts,
        )
        logger.info("PLDA trained on %d training rows", len(plda_rows))
    return out


def verify(encode, test_set, hparams, name):
    """Scores every trial list with every back-end; logs and writes results.

    The test utterances are embedded once; so are the training rows of the
    cohort (``cohort_opts``: ``num_utts``, ``top_k`` of ``as-norm``,
    ``seed``) and of PLDA (``plda_opts``: ``num_utts`` and the arguments
    of ``train_plda``) when ``scoring`` asks
    for them.

    Arguments
    ---------
    encode : callable
        ``encode(wavs, wav_lens) -> [batch, 1, dim]`` embeddings.
    test_set : DynamicItemDataset
        Test utterances (``id``, ``sig``): every utterance of every list.
    hparams : dict
        Needs ``verification_file`` or ``trial_lists`` (``{name: file}``),
        ``test_dataloader_opts``, ``output_folder`` and ``p_target``;
        optionally ``scoring`` (default ``[cosine]``), ``cohort_opts``,
        ``plda_opts``, ``train_csv`` (cohort / PLDA rows) and
        ``save_scores`` (per-trial score files in ``<output_folder>/
        scores``).
    name : str
        Name of the model in the logs and in ``verification.json``.

    Returns
    -------
    dict
        The first list's first back-end: ``EER`` (percent), ``minDCF``,
        ``minDCF_norm``, trial counts, ``trial_list``, ``scoring``; and
        ``by_list``: ``{list: {back-end: the same figures}}``.
    """
    methods = scoring_methods(hparams)
    lists = trial_lists(hparams)
    # Sorted by duration, so that batches hold (almost) no padding.
    test_set = test_set.filtered_sorted(sort_key="duration")
    loader = make_dataloader(test_set, **hparams["test_dataloader_opts"])
    embeddings = extract_embeddings(encode, loader)
    backends = _backends(encode, hparams, methods)
    p_target = hparams["p_target"]
    by_list = {}
    for list_name, path in lists.items():
        trials = read_trials(path)
        by_list[list_name] = {}
        for method in methods:
            scores, labels = score_trials(
                embeddings, trials, method, **backends
            )
            if labels.all() or not labels.any():
                raise ValueError(
                    f"{path} needs both target (1) and non-target (0) trials"
                )
            if hparams.get("save_scores"):
                write_scores(
                    os.path.join(
                        hparams["output_folder"],
                        "scores",
                        f"{name}_{list_name}_{method}.txt",
                    ),
                    trials,
                    scores,
                )
            result = detection_metrics(
                scores[labels], scores[~labels], p_target
            )
            by_list[list_name][method] = result
            logger.info(
                "%s, %s, %s: EER %.3f %%, minDCF(p=%.2g) %.4f (normalised "
                "%.4f) on %d + %d trials",
                name,
                list_name,
                method,
                result["EER"],
                p_target,
                result["minDCF"],
                result["minDCF_norm"],
                result["target_trials"],
                result["nontarget_trials"],
            )
    first = next(iter(lists))
    result = dict(by_list[first][methods[0]])
    result.update(trial_list=first, scoring=methods[0], by_list=by_list)
    path = os.path.join(hparams["output_folder"], "verification.json")
    previous = {}
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
    previous[name] = result
    atomic_write_text(path, json.dumps(previous, indent=1) + "\n")
    return result
