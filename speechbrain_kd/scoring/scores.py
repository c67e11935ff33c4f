"""Scores of a trial list with one back-end, and score files.

Back-ends (``SCORING_METHODS``): cosine; z-, t- and s-norm against a
cohort of training embeddings and adaptive s-norm (``as-norm``)
(``speechbrain_kd.scoring.norms``); PLDA (``speechbrain_kd.scoring.plda``).
"""

from speechbrain_kd.fileio import atomic_write_text
from speechbrain_kd.scoring.norms import (
    cohort_stats,
    normalize_scores,
    pair_cosine,
    trial_indices,
)
from speechbrain_kd.scoring.plda import plda_pair_scores

SCORING_METHODS = ("cosine", "z-norm", "t-norm", "s-norm", "as-norm", "plda")


def score_trials(
    embeddings, trials, method="cosine", cohort=None, top_k=None, plda=None
):
    """Scores a trial list with one back-end.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)``.
    method : str
        ``cosine``; ``z-norm``, ``t-norm``, ``s-norm`` (cosine normalised
        with the statistics of the whole ``cohort``); ``as-norm``
        (adaptive s-norm: the ``top_k`` cohort scores closest to each side;
        SpeechBrain's ``s-norm`` with ``cohort_size: top_k``); ``plda``.
    cohort : torch.Tensor, optional
        ``[C, dim]`` impostor embeddings (training utterances), for the
        normalisations.
    top_k : int, optional
        Cohort size of ``as-norm``.
    plda : speechbrain.processing.PLDA_LDA.PLDA, optional
        Trained model (``train_plda``), for ``plda``.

    Returns
    -------
    scores : torch.Tensor
        ``[trials]`` scores, in trial-list order.
    labels : torch.Tensor
        ``[trials]`` bool, True for target trials.

    Example
    -------
    >>> import torch
    >>> emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 0.2]),
    ...        "c": torch.tensor([0.0, 1.0])}
    >>> cohort = torch.randn(10, 2)
    >>> s, lab = score_trials(emb, [(1, "a", "b"), (0, "a", "c")],
    ...                       "as-norm", cohort=cohort, top_k=5)
    >>> bool(s[0] > s[1]), lab.tolist()
    (True, [True, False])
    """
    if method not in SCORING_METHODS:
        raise ValueError(
            f"Unknown scoring method {method!r}; expected one of "
            f"{list(SCORING_METHODS)}"
        )
    matrix, e_idx, t_idx, labels = trial_indices(embeddings, trials)
    if method == "plda":
        if plda is None:
            raise ValueError("Scoring method 'plda' needs a trained plda")
        return plda_pair_scores(plda, matrix, e_idx, t_idx), labels
    scores = pair_cosine(matrix, e_idx, t_idx)
    if method == "cosine":
        return scores, labels
    if cohort is None:
        raise ValueError(f"Scoring method {method!r} needs a cohort")
    if method == "as-norm":
        if top_k is None:
            raise ValueError("Scoring method 'as-norm' needs top_k")
        mean, std = cohort_stats(matrix, cohort, top_k=top_k)
        method = "s-norm"
    else:
        mean, std = cohort_stats(matrix, cohort)
    return normalize_scores(scores, e_idx, t_idx, mean, std, method), labels


def read_scores(path):
    """``(labels, scores)`` numpy arrays of a ``write_scores`` file, and
    its enrolment IDs: ``(enrol, labels, scores)``.

    Raises ``ValueError`` naming the file and line of a malformed line.
    """
    import numpy

    enrol, labels, scores = [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 4 or parts[2] not in ("0", "1"):
                raise ValueError(
                    f"{path}:{n}: expected 'enrol test label score' with "
                    f"label 0 or 1, got {line.strip()!r}"
                )
            enrol.append(parts[0])
            labels.append(int(parts[2]))
            scores.append(float(parts[3]))
    return enrol, numpy.asarray(labels), numpy.asarray(scores)


def write_scores(path, trials, scores):
    """Writes ``enrol test label score`` lines, as SpeechBrain's scores.txt."""
    atomic_write_text(
        path,
        "".join(
            f"{e} {t} {lab} {s:.6f}\n"
            for (lab, e, t), s in zip(trials, scores.tolist())
        ),
    )
