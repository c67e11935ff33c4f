"""Speaker-verification scoring: embeddings, cosine scores, EER and minDCF.

``compute_eer`` and ``compute_min_dcf`` give the same values as
``speechbrain.utils.metric_stats.EER`` / ``minDCF`` (same candidate
thresholds: the unique scores and the midpoints between them; a trial is
accepted when its score is above the threshold), but sort the scores once
and count with binary search, so that they run in O(N log N): well under a
second for VoxCeleb1-E/H (~580k trials), where SpeechBrain's ``EER`` loops
over every threshold and ``minDCF`` builds a thresholds x scores matrix.
"""

import logging

import torch
import torch.nn.functional as F

from speechbrain_kd.data import read_trials

logger = logging.getLogger(__name__)


def _as_scores(scores, name):
    scores = torch.as_tensor(scores)
    if not scores.is_floating_point():
        scores = scores.float()
    scores = scores.detach().flatten().cpu()
    if scores.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name} holds NaN or infinite scores")
    return scores


def error_rates(positive_scores, negative_scores):
    """Miss and false-alarm rates at every candidate threshold.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.

    Returns
    -------
    thresholds : torch.Tensor
        Sorted candidate thresholds: unique scores and their midpoints.
    p_miss : torch.Tensor
        Fraction of target scores ``<=`` each threshold.
    p_fa : torch.Tensor
        Fraction of non-target scores ``>`` each threshold.

    Example
    -------
    >>> thr, p_miss, p_fa = error_rates([0.6, 0.8], [0.2, 0.7])
    >>> [round(x, 2) for x in thr.tolist()]
    [0.2, 0.4, 0.6, 0.65, 0.7, 0.75, 0.8]
    >>> p_miss.tolist(), p_fa.tolist()
    ([0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0], [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    pos, neg = pos.to(dtype), neg.to(dtype)
    thresholds = torch.unique(torch.cat([pos, neg]))  # sorted
    middle = (thresholds[:-1] + thresholds[1:]) / 2
    thresholds, _ = torch.sort(torch.cat([thresholds, middle]))
    pos_sorted, _ = torch.sort(pos)
    neg_sorted, _ = torch.sort(neg)
    n_miss = torch.searchsorted(pos_sorted, thresholds, right=True)
    n_fa = neg.numel() - torch.searchsorted(neg_sorted, thresholds, right=True)
    p_miss = n_miss.float() / pos.numel()
    p_fa = n_fa.float() / neg.numel()
    return thresholds, p_miss, p_fa


def compute_eer(positive_scores, negative_scores):
    """Equal error rate and its threshold, as ``speechbrain``'s ``EER``.

    At the threshold where miss and false-alarm rates are closest (the
    lowest such threshold), returns their mean.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.

    Returns
    -------
    eer : float
        Equal error rate, in [0, 1].
    threshold : float
        The threshold where it is reached.

    Example
    -------
    >>> eer, threshold = compute_eer(torch.tensor([0.6, 0.7, 0.8, 0.5]),
    ...                              torch.tensor([0.4, 0.3, 0.2, 0.1]))
    >>> eer, round(threshold, 2)
    (0.0, 0.4)
    """
    thresholds, p_miss, p_fa = error_rates(positive_scores, negative_scores)
    gap = (p_fa.double() - p_miss.double()).abs()
    i = int(torch.argmin(gap))  # first minimum, as SpeechBrain's loop
    eer = (float(p_fa[i]) + float(p_miss[i])) / 2
    return eer, float(thresholds[i])


def compute_min_dcf(
    positive_scores, negative_scores, p_target=0.01, c_miss=1.0, c_fa=1.0
):
    """Minimum (unnormalised) detection cost, as ``speechbrain``'s ``minDCF``.

    ``C_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)``,
    minimised over the candidate thresholds.

    Arguments
    ---------
    positive_scores : torch.Tensor or array
        1-D scores of target trials.
    negative_scores : torch.Tensor or array
        1-D scores of non-target trials.
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of a miss.
    c_fa : float
        Cost of a false alarm.

    Returns
    -------
    min_dcf : float
        The minimum cost.
    threshold : float
        The threshold where it is reached.

    Example
    -------
    >>> compute_min_dcf(torch.tensor([0.6, 0.7, 0.8, 0.5]),
    ...                 torch.tensor([0.4, 0.3, 0.2, 0.1]))[0]
    0.0
    """
    thresholds, p_miss, p_fa = error_rates(positive_scores, negative_scores)
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    i = int(torch.argmin(c_det))
    return float(c_det[i]), float(thresholds[i])


@torch.no_grad()
def extract_embeddings(encode, dataloader):
    """Embeds every utterance of ``dataloader``.

    Arguments
    ---------
    encode : callable
        ``encode(wavs, wav_lens) -> [batch, 1, dim]`` (or ``[batch, dim]``).
    dataloader : iterable
        Yields SpeechBrain ``PaddedBatch`` objects with ``id`` and ``sig``.

    Returns
    -------
    dict
        ID -> 1-D embedding (CPU float tensor).
    """
    embeddings = {}
    for batch in dataloader:
        wavs, lens = batch.sig
        emb = encode(wavs, lens).float().cpu()
        emb = emb.reshape(emb.shape[0], -1)
        for utt_id, e in zip(batch.id, emb):
            embeddings[utt_id] = e
    return embeddings


def cosine_scores(embeddings, trials):
    """Cosine similarity of each trial.

    Arguments
    ---------
    embeddings : dict
        ID -> 1-D embedding.
    trials : list of tuple
        ``(label, enrol_id, test_id)`` as ``speechbrain_kd.data.read_trials``
        returns them.

    Returns
    -------
    positive_scores, negative_scores : torch.Tensor
        Scores of the target and the non-target trials.

    Example
    -------
    >>> emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0]),
    ...        "c": torch.tensor([0.0, 1.0])}
    >>> pos, neg = cosine_scores(emb, [(1, "a", "b"), (0, "a", "c")])
    >>> round(float(pos[0]), 4), float(neg[0])
    (0.7071, 0.0)
    """
    missing = sorted(
        {i for _, e, t in trials for i in (e, t) if i not in embeddings}
    )
    if missing:
        raise KeyError(
            f"{len(missing)} trial entries have no embedding (not in the test "
            f"manifest?), e.g. {missing[:3]}"
        )
    enrol = torch.stack([embeddings[e] for _, e, _ in trials])
    test = torch.stack([embeddings[t] for _, _, t in trials])
    scores = F.cosine_similarity(enrol, test, dim=-1, eps=1e-6)
    labels = torch.tensor([lab for lab, _, _ in trials], dtype=torch.bool)
    return scores[labels], scores[~labels]


def evaluate_trials(embeddings, trials_path, p_target=0.01):
    """Cosine-scores a VoxCeleb-format trial list; EER and minDCF.

    Returns
    -------
    dict
        ``EER`` in percent, ``minDCF`` (unnormalised, as SpeechBrain's),
        ``minDCF_norm`` (divided by ``min(p_target, 1 - p_target)``, the
        cost of the best trivial system, as in NIST SRE and most papers),
        and the trial counts.
    """
    trials = read_trials(trials_path)
    pos, neg = cosine_scores(embeddings, trials)
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(
            f"{trials_path} needs both target (1) and non-target (0) trials"
        )
    eer, _ = compute_eer(pos, neg)
    min_dcf, _ = compute_min_dcf(pos, neg, p_target=p_target)
    return {
        "EER": 100 * eer,
        "minDCF": min_dcf,
        "minDCF_norm": min_dcf / min(p_target, 1 - p_target),
        "target_trials": int(pos.numel()),
        "nontarget_trials": int(neg.numel()),
    }
