"""Detection metrics of speaker verification: EER, minDCF, thresholds.

``compute_eer`` and ``compute_min_dcf`` give the same values as
``speechbrain.utils.metric_stats.EER`` / ``minDCF`` (same candidate
thresholds: the unique scores and the midpoints between them; a trial is
accepted when its score is above the threshold), but sort the scores once
and count with binary search, so that they run in O(N log N): well under a
second for VoxCeleb1-E/H (~580k trials), where SpeechBrain's ``EER`` loops
over every threshold and ``minDCF`` builds a thresholds x scores matrix.

Decision thresholds (``operating_points``): the EER threshold and, for a
target false-accept rate, the smallest threshold whose false-accept rate
is at most the target, with the false-reject rate there; a pair is
accepted when ``score > threshold`` (SpeechBrain's
``SpeakerRecognition.verify_batch``). ``detection_metrics`` reports them
with a linear score calibration (``speechbrain_kd.scoring.calibration``).
"""

import logging
import math

import torch

from speechbrain_kd.card_thresholds import far_key
from speechbrain_kd.scoring.calibration import linear_calibration

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


def det_points(positive_scores, negative_scores, num=None):
    """Points of the DET curve: false-alarm and miss rates, FAR ascending.

    The rates of ``error_rates`` (a miss is a target score ``<=`` the
    threshold, a false alarm a non-target score ``>`` it), ordered by
    decreasing threshold, so that FAR never decreases and FRR never
    increases along the curve. ``num``: that many thresholds at evenly
    spaced quantiles of all scores (plots and records), else every one.

    Returns
    -------
    far, frr : numpy.ndarray
        False-alarm and miss rates, in [0, 1].

    Example
    -------
    >>> far, frr = det_points([0.6, 0.8], [0.2, 0.7])
    >>> far.tolist(), frr.tolist()
    ([0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5], [1.0, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0])
    """
    if num is None:
        _, p_miss, p_fa = error_rates(positive_scores, negative_scores)
        return p_fa.numpy()[::-1].copy(), p_miss.numpy()[::-1].copy()
    pos = _as_scores(positive_scores, "positive_scores").double()
    neg = _as_scores(negative_scores, "negative_scores").double()
    q = torch.linspace(0.001, 0.999, num, dtype=torch.float64)
    thresholds = torch.quantile(torch.cat([pos, neg]), q).flip(0)
    far = (neg[None, :] > thresholds[:, None]).double().mean(1)
    frr = (pos[None, :] <= thresholds[:, None]).double().mean(1)
    return far.numpy(), frr.numpy()


def compute_eer(positive_scores, negative_scores):
    """Equal error rate and its threshold, as ``speechbrain``'s ``EER``.

    Returns ``(eer, threshold)``: at the lowest threshold where the miss and
    false-alarm rates of ``error_rates`` are closest, eer is their mean, in
    [0, 1]. Raises ``ValueError`` for empty or non-finite scores.

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

    Returns ``(min C_det, threshold)`` over the ``error_rates`` thresholds,
    ``C_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)``;
    raises ``ValueError`` for empty or non-finite scores.

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


FAR_TARGETS = (0.01, 0.001)


def rates_at(positive_scores, negative_scores, threshold):
    """False-accept and false-reject rates at one threshold.

    A trial is accepted when its score is ``> threshold``: FAR is the
    fraction of non-target scores above it, FRR the fraction of target
    scores at or below it (``error_rates``' ``p_fa`` and ``p_miss``).

    Returns
    -------
    dict
        ``threshold``, ``far``, ``frr`` (fractions).

    Example
    -------
    >>> rates_at([0.6, 0.8], [0.2, 0.7], 0.6)
    {'threshold': 0.6, 'far': 0.5, 'frr': 0.5}
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    threshold = float(threshold)
    return {
        "threshold": threshold,
        "far": int((neg > threshold).sum()) / neg.numel(),
        "frr": int((pos <= threshold).sum()) / pos.numel(),
    }


def threshold_at_far(positive_scores, negative_scores, far):
    """The smallest threshold whose false-accept rate is at most ``far``.

    With acceptance at ``score > threshold``, it is the (k+1)-th highest
    non-target score, k = floor(far x non-target trials): the threshold of
    lowest false-reject rate meeting the target. With fewer than 1 / far
    non-target trials, it is the highest non-target score (FAR 0).

    Arguments
    ---------
    positive_scores, negative_scores : torch.Tensor or array
        1-D scores of the target and the non-target trials.
    far : float
        Target false-accept rate, in (0, 1) (else ``ValueError``).

    Returns
    -------
    dict
        ``threshold``, ``far`` (measured, <= the target), ``frr``.

    Example
    -------
    >>> neg = [0.1 * i for i in range(10)]  # 0.0 ... 0.9
    >>> p = threshold_at_far([0.75, 0.95], neg, far=0.2)
    >>> round(p["threshold"], 2), p["far"], p["frr"]  # 0.8 and 0.9 pass
    (0.7, 0.2, 0.0)
    >>> p = threshold_at_far([0.75, 0.95], neg, far=0.01)
    >>> round(p["threshold"], 2), p["far"], p["frr"]
    (0.9, 0.0, 0.5)
    """
    far = float(far)
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1), got {far}")
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    neg_sorted, _ = torch.sort(neg.to(dtype), descending=True)
    # false accepts allowed; the tolerance keeps e.g. 0.01 x 4000 at 40
    k = int(math.floor(far * neg.numel() + 1e-9))
    threshold = float(neg_sorted[min(k, neg.numel() - 1)])
    return rates_at(pos.to(dtype), neg.to(dtype), threshold)


def operating_points(positive_scores, negative_scores, fars=FAR_TARGETS):
    """Thresholds and error rates at the EER point and at target FARs.

    Arguments
    ---------
    positive_scores, negative_scores : torch.Tensor or array
        1-D scores of the target and the non-target trials.
    fars : sequence of float
        Target false-accept rates (default 1 % and 0.1 %).

    Returns
    -------
    dict
        ``eer`` (``compute_eer``'s threshold) and ``far_1pct``,
        ``far_0.1pct``, ... (``threshold_at_far``), each ``{threshold,
        far, frr}``; accept when ``score > threshold``.

    Example
    -------
    >>> pts = operating_points([0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1])
    >>> list(pts), round(pts["eer"]["threshold"], 2), pts["eer"]["frr"]
    (['eer', 'far_1pct', 'far_0.1pct'], 0.4, 0.0)
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    _, threshold = compute_eer(pos, neg)
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    out = {"eer": rates_at(pos.to(dtype), neg.to(dtype), threshold)}
    for far in fars:
        out[far_key(far)] = threshold_at_far(pos, neg, far)
    return out


def detection_metrics(positive_scores, negative_scores, p_target=0.01):
    """EER (percent), minDCF (raw and normalised), trial counts, decision
    thresholds and a linear calibration.

    Returns
    -------
    dict
        ``EER`` (percent), ``minDCF``, ``minDCF_norm``, ``target_trials``,
        ``nontarget_trials``; ``thresholds``: ``operating_points`` (EER,
        FAR 1 %, FAR 0.1 %); ``calibration``:
        ``speechbrain_kd.scoring.linear_calibration`` (``a``, ``b``,
        ``prior`` 0.5, ``Cllr``, ``minCllr``).

    Example
    -------
    >>> m = detection_metrics([0.9, 0.8], [0.1, 0.85])
    >>> m["EER"], m["target_trials"], m["nontarget_trials"]
    (50.0, 2, 2)
    >>> m["thresholds"]["far_1pct"]["threshold"], m["calibration"]["prior"]
    (0.8500000238418579, 0.5)
    """
    pos = _as_scores(positive_scores, "positive_scores")
    neg = _as_scores(negative_scores, "negative_scores")
    eer, _ = compute_eer(pos, neg)
    min_dcf, _ = compute_min_dcf(pos, neg, p_target=p_target)
    return {
        "EER": 100 * eer,
        "minDCF": min_dcf,
        "minDCF_norm": min_dcf / min(p_target, 1 - p_target),
        "target_trials": int(pos.numel()),
        "nontarget_trials": int(neg.numel()),
        "thresholds": operating_points(pos, neg),
        "calibration": linear_calibration(pos.double(), neg.double()),
    }


def published_thresholds(result, trial_file=None, scoring="cosine"):
    """The ``thresholds`` and ``calibration`` to publish from a result of
    ``speechbrain_kd.scoring.verify``.

    Taken from the ``scoring`` back-end (cosine: the score
    ``SpeakerRecognition`` computes) of the result's main trial list.

    Arguments
    ---------
    result : dict
        ``verify``'s result (``trial_list``, ``by_list``).
    trial_file : str, optional
        The list's file; its base name is recorded as ``trial_list``.
    scoring : str
        The back-end whose scores the thresholds apply to.

    Returns
    -------
    thresholds, calibration : dict or None
        The arguments of ``speechbrain_kd.export.export_pretrained`` (None,
        None when the list was not scored with ``scoring``).

    Example
    -------
    >>> fig = detection_metrics([0.9, 0.8], [0.1, 0.85])
    >>> res = {"trial_list": "trials", "by_list": {"trials": {"cosine": fig}}}
    >>> t, c = published_thresholds(res, "/data/veri_test2.txt")
    >>> t["corpus"], t["trial_list"], t["target_trials"], sorted(c)[:2]
    ('trials', 'veri_test2.txt', 2, ['Cllr', 'a'])
    """
    import os

    name = result["trial_list"]
    figures = result.get("by_list", {}).get(name, {}).get(scoring)
    if figures is None or "thresholds" not in figures:
        logger.warning(
            "Trial list %s has no %s scores with thresholds: the published "
            "folder records none",
            name,
            scoring,
        )
        return None, None
    thresholds = dict(figures["thresholds"])
    thresholds.update(
        corpus=name,
        target_trials=figures["target_trials"],
        nontarget_trials=figures["nontarget_trials"],
        scoring=scoring,
    )
    if trial_file:
        thresholds["trial_list"] = os.path.basename(str(trial_file))
    return thresholds, figures.get("calibration")
