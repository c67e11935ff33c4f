"""Cosine scoring of trial pairs and score normalisation against a cohort.

Every trial list stores each utterance's embedding once
(``trial_indices``), so a VoxCeleb1-E/H list scores in seconds. z-, t- and
s-norm use a cohort of training embeddings, adaptive s-norm (``as-norm``)
the ``top_k`` closest cohort scores (SpeechBrain's ``s-norm`` with
``cohort_size``); the cohort statistics are computed once per utterance
(``cohort_stats``) rather than once per trial.
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.data.trials import missing_trial_ids


def trial_indices(embeddings, trials):
    """The embeddings a trial list uses, stacked once, and each side's index.

    Every utterance is stored once however many trials it is in, so that a
    VoxCeleb1-E/H list (~580k trials over ~145k utterances) never copies an
    embedding per trial.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)`` as ``speechbrain_kd.data.read_trials``
        returns them.

    Returns
    -------
    matrix : torch.Tensor
        ``[utterances, dim]`` float embeddings, in first-use order.
    enrol_idx, test_idx : torch.Tensor
        ``[trials]`` row of each trial's enrolment / test utterance.
    labels : torch.Tensor
        ``[trials]`` bool, True for target trials.

    Example
    -------
    >>> import torch
    >>> emb = {"a": torch.ones(2), "b": torch.zeros(2)}
    >>> m, e, t, lab = trial_indices(emb, [(1, "a", "b"), (0, "b", "a")])
    >>> m.shape, e.tolist(), t.tolist(), lab.tolist()
    (torch.Size([2, 2]), [0, 1], [1, 0], [True, False])
    """
    missing = missing_trial_ids(trials, embeddings)
    if missing:
        raise KeyError(
            f"{len(missing)} trial entries have no embedding (not in the test "
            f"manifest?), e.g. {missing[:3]}"
        )
    index = {}
    for _, e, t in trials:
        for utt in (e, t):
            if utt not in index:
                index[utt] = len(index)
    matrix = torch.stack([embeddings[u] for u in index]).float()
    enrol_idx = torch.tensor([index[e] for _, e, _ in trials])
    test_idx = torch.tensor([index[t] for _, _, t in trials])
    labels = torch.tensor([lab for lab, _, _ in trials], dtype=torch.bool)
    return matrix, enrol_idx, test_idx, labels


def pair_cosine(matrix, enrol_idx, test_idx, chunk_size=65536):
    """Cosine similarity of row pairs, in chunks (bounded memory).

    Same values as ``F.cosine_similarity`` (eps 1e-6) of the stacked pairs.

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> pair_cosine(m, torch.tensor([0, 0]), torch.tensor([1, 2])).tolist()
    [0.7071067690849304, 0.0]
    """
    out = torch.empty(enrol_idx.numel(), dtype=matrix.dtype)
    for s in range(0, enrol_idx.numel(), chunk_size):
        e = matrix[enrol_idx[s : s + chunk_size]]
        t = matrix[test_idx[s : s + chunk_size]]
        out[s : s + chunk_size] = F.cosine_similarity(e, t, dim=-1, eps=1e-6)
    return out


def cohort_stats(matrix, cohort, top_k=None, max_elements=2**24):
    """Mean and standard deviation of each row's scores against a cohort.

    The statistics of score normalisation: each embedding is cosine-scored
    against every cohort embedding (impostors: training utterances), and
    the mean and (unbiased) standard deviation of those scores, or of the
    ``top_k`` highest ones (adaptive normalisation), are returned. As
    SpeechBrain's ``speaker_verification_cosine.py`` (its ``cohort_size``
    is ``top_k``), but computed once per utterance, not once per trial, in
    chunks of at most ``max_elements`` scores.

    Arguments
    ---------
    matrix : torch.Tensor
        ``[N, dim]`` embeddings to normalise.
    cohort : torch.Tensor
        ``[C, dim]`` cohort embeddings.
    top_k : int, optional
        Keep the ``top_k`` highest cohort scores of each row (all if None).
    max_elements : int
        Largest number of scores held at once.

    Returns
    -------
    mean, std : torch.Tensor
        ``[N]`` each.

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[1.0, 0.0]])
    >>> c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> mean, std = cohort_stats(m, c)
    >>> round(float(mean), 4), round(float(std), 4)
    (0.0, 1.0)
    >>> mean, std = cohort_stats(m, c, top_k=2)
    >>> round(float(mean), 4), round(float(std), 4)
    (0.5, 0.7071)
    """
    if cohort.dim() != 2 or cohort.shape[0] < 2:
        raise ValueError(
            f"The cohort needs at least 2 embeddings, got {tuple(cohort.shape)}"
        )
    if cohort.shape[1] != matrix.shape[1]:
        raise ValueError(
            f"Cohort embeddings have {cohort.shape[1]} dimensions, the scored "
            f"ones {matrix.shape[1]}"
        )
    k = cohort.shape[0] if top_k is None else int(top_k)
    if not 2 <= k <= cohort.shape[0]:
        raise ValueError(
            f"top_k must be in [2, cohort size {cohort.shape[0]}], got {top_k}"
        )
    c = F.normalize(cohort.float(), dim=-1, eps=1e-6)
    rows = max(1, max_elements // c.shape[0])
    means, stds = [], []
    for s in range(0, matrix.shape[0], rows):
        m = F.normalize(matrix[s : s + rows].float(), dim=-1, eps=1e-6)
        scores = m @ c.T
        if k < c.shape[0]:
            scores = torch.topk(scores, k, dim=1).values
        means.append(scores.mean(dim=1))
        stds.append(scores.std(dim=1))
    return torch.cat(means), torch.cat(stds)


def normalize_scores(scores, enrol_idx, test_idx, mean, std, method="s-norm"):
    """Z-, T- or S-normalised trial scores from per-utterance statistics.

    ``z-norm`` uses the enrolment side's cohort statistics, ``t-norm`` the
    test side's, ``s-norm`` the mean of both (SpeechBrain's definitions).

    Arguments
    ---------
    scores : torch.Tensor
        ``[trials]`` raw scores.
    enrol_idx, test_idx : torch.Tensor
        ``[trials]`` indices into ``mean`` / ``std``.
    mean, std : torch.Tensor
        Per-utterance cohort statistics (``cohort_stats``).
    method : str
        ``z-norm``, ``t-norm`` or ``s-norm``.

    Example
    -------
    >>> import torch
    >>> normalize_scores(torch.tensor([0.5]), torch.tensor([0]),
    ...                  torch.tensor([1]), torch.tensor([0.1, 0.3]),
    ...                  torch.tensor([0.2, 0.2]), "s-norm").tolist()
    [1.5]
    """
    std = std.clamp_min(1e-8)  # a degenerate cohort must not give inf
    z = (scores - mean[enrol_idx]) / std[enrol_idx]
    if method == "z-norm":
        return z
    t = (scores - mean[test_idx]) / std[test_idx]
    if method == "t-norm":
        return t
    if method == "s-norm":
        return 0.5 * (z + t)
    raise ValueError(
        f"method must be 'z-norm', 't-norm' or 's-norm', got {method!r}"
    )
