"""Score calibration: Cllr, PAV and linear calibration of cosine scores.

A cosine score says which of two trials looks more like the same speaker,
not how likely it is. Two things make it usable for a decision:

- **Thresholds** (``speechbrain_kd.scoring.operating_points``): the
  cosine score above which a pair is accepted, at the equal-error point and
  at a target false-accept rate, measured on a trial list.
- **Linear calibration** (``linear_calibration``): ``llr = a * score + b``,
  a log-likelihood ratio (natural log, same speaker vs different), fitted
  by prior-weighted logistic regression (Brümmer's linear calibration, as
  in the BOSARIS toolkit) and judged by ``cllr`` (bits; 0 perfect, 1 the
  cost of always answering "don't know") against ``min_cllr``, the Cllr
  of the best monotonic map of the same scores (pool-adjacent-violators).
  At a prior P of "same speaker", the posterior is
  ``sigmoid(llr + log(P / (1 - P)))`` and the Bayes decision (equal costs)
  accepts when ``llr > -log(P / (1 - P))`` (``calibrated_llr``).

``speechbrain_kd.card_thresholds`` writes both into a published folder
(``speechbrain_kd.export.export_pretrained(thresholds=...,
calibration=...)``).

Convention: a pair is accepted (same speaker) when ``score > threshold``,
as SpeechBrain's ``SpeakerRecognition.verify_batch`` decides and as
``speechbrain_kd.scoring.error_rates`` counts.
"""

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

LN2 = math.log(2.0)


def _scores(scores, name):
    """1-D float64 array of finite scores, or an error naming ``name``."""
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite scores")
    return arr


def _check_prior(prior):
    if not 0.0 < float(prior) < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior!r}")
    return float(prior)


def cllr(target_llrs, nontarget_llrs):
    """Log-likelihood-ratio cost, in bits.

    ``Cllr = (mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)) / 2``:
    0 for LLRs that are right and infinitely sure, 1 bit for LLRs that are
    all 0 (no information), more for LLRs confidently wrong. Infinite LLRs
    on the right side cost 0.

    Arguments
    ---------
    target_llrs, nontarget_llrs : array
        Natural-log LLRs of the target and the non-target trials.

    Returns
    -------
    float

    Example
    -------
    >>> cllr([0.0, 0.0], [0.0])
    1.0
    >>> round(cllr([20.0], [-20.0]), 6)
    0.0
    >>> round(cllr([-2.0], [2.0]), 4)  # confidently wrong: log2(1 + e^2)
    3.0685
    """
    tar = np.asarray(target_llrs, dtype=np.float64).ravel()
    non = np.asarray(nontarget_llrs, dtype=np.float64).ravel()
    if tar.size == 0 or non.size == 0:
        raise ValueError(
            "cllr needs target and non-target LLRs, got "
            f"{tar.size} and {non.size}"
        )
    if np.isnan(tar).any() or np.isnan(non).any():
        raise ValueError("cllr: the LLRs hold NaN")
    c_tar = np.logaddexp(0.0, -tar).mean()
    c_non = np.logaddexp(0.0, non).mean()
    return float((c_tar + c_non) / (2 * LN2))


def pav(values, weights=None):
    """Isotonic (non-decreasing) least-squares fit: pool adjacent violators.

    Arguments
    ---------
    values : array
        1-D values, in the order the fit must be non-decreasing in.
    weights : array, optional
        Positive weight of each value (default 1).

    Returns
    -------
    numpy.ndarray
        The fitted values: each block of pooled neighbours gets its
        weighted mean.

    Example
    -------
    >>> pav([1.0, 3.0, 2.0, 4.0]).tolist()
    [1.0, 2.5, 2.5, 4.0]
    >>> pav([0.0, 1.0, 0.0], weights=[1.0, 1.0, 3.0]).tolist()
    [0.0, 0.25, 0.25]
    """
    y = np.asarray(values, dtype=np.float64).ravel()
    w = (
        np.ones_like(y)
        if weights is None
        else np.asarray(weights, dtype=np.float64).ravel()
    )
    if w.shape != y.shape or (w <= 0).any():
        raise ValueError(
            f"pav: weights must be {y.size} positive numbers, got {w.size}"
        )
    # Stack of blocks (mean, weight, length); Python lists: fast in a loop
    means, wts, lens = [], [], []
    for v, ww in zip(y.tolist(), w.tolist()):
        n = 1
        while means and means[-1] >= v:
            pw = wts.pop()
            v = (means.pop() * pw + v * ww) / (pw + ww)
            ww += pw
            n += lens.pop()
        means.append(v)
        wts.append(ww)
        lens.append(n)
    return np.repeat(np.array(means), np.array(lens, dtype=np.int64))


def pav_llrs(positive_scores, negative_scores):
    """The LLRs of the best monotonic map of the scores (PAV).

    Tied scores are pooled first (they must get one LLR); the isotonic fit
    of the labels on the sorted scores is the posterior of a target, turned
    into an LLR by removing the trial list's prior log-odds. A block of
    non-targets only gets ``-inf``, of targets only ``+inf``.

    Returns
    -------
    target_llrs, nontarget_llrs : numpy.ndarray

    Example
    -------
    >>> t, n = pav_llrs([0.9, 0.4], [0.1, 0.5])
    >>> t.tolist(), n.tolist()  # sorted labels 0 1 0 1 -> 0 .5 .5 1
    ([inf, 0.0], [-inf, 0.0])
    """
    tar = _scores(positive_scores, "positive_scores")
    non = _scores(negative_scores, "negative_scores")
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    unique, inverse = np.unique(scores, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    hits = np.bincount(inverse, weights=labels)
    posterior = pav(hits / counts, counts)
    with np.errstate(divide="ignore"):
        llr = (
            np.log(posterior)
            - np.log1p(-posterior)
            - math.log(tar.size / non.size)
        )
    llr = llr[inverse]
    return llr[: tar.size], llr[tar.size :]


def min_cllr(positive_scores, negative_scores):
    """Cllr (bits) of the best monotonic calibration of the scores (PAV): no
    monotonic calibration, linear ones included, has a lower Cllr.
    """
    return cllr(*pav_llrs(positive_scores, negative_scores))


def fit_linear_calibration(
    positive_scores, negative_scores, prior=0.5, maxiter=1000
):
    """``(a, b)`` of ``llr = a * score + b``, by prior-weighted logistic
    regression.

    Minimises ``prior * mean_tar softplus(-(llr + logit(prior))) +
    (1 - prior) * mean_non softplus(llr + logit(prior))`` (Brümmer's
    linear calibration at an effective prior; at ``prior`` 0.5 this is
    Cllr times ln 2, so the fitted map has the lowest Cllr of all affine
    maps). Scores are standardised for the fit. Perfectly separated trials
    have no finite optimum: the slope grows until the optimiser's gradient
    tolerance stops it (a large, finite ``a``). Constant scores give
    ``(0, 0)``.

    Arguments
    ---------
    positive_scores, negative_scores : array
        Scores of the target and the non-target trials.
    prior : float
        Effective target prior of the fit, in (0, 1).
    maxiter : int
        Iterations of ``scipy.optimize.minimize`` (L-BFGS-B).

    Returns
    -------
    a, b : float

    Example
    -------
    Scores 1, 2, 3 (targets) and 0, 1, 2: by symmetry llr = a (s - 1.5),
    and the gradient vanishes at a = ln 4 (sigmoids 2/3, 1/3, 1/9):

    >>> a, b = fit_linear_calibration([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    >>> abs(a - math.log(4)) < 1e-4, abs(b + math.log(8)) < 1e-4
    (True, True)
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    prior = _check_prior(prior)
    tar = _scores(positive_scores, "positive_scores")
    non = _scores(negative_scores, "negative_scores")
    both = np.concatenate([tar, non])
    mean, std = float(both.mean()), float(both.std())
    if not std > 0:
        return 0.0, 0.0
    zt, zn = (tar - mean) / std, (non - mean) / std
    offset = math.log(prior / (1 - prior))
    wt, wn = prior / tar.size, (1 - prior) / non.size

    def objective(x):
        lt = x[0] * zt + x[1] + offset
        ln = x[0] * zn + x[1] + offset
        loss = (
            wt * np.logaddexp(0.0, -lt).sum() + wn * np.logaddexp(0.0, ln).sum()
        )
        gt = -wt * expit(-lt)
        gn = wn * expit(ln)
        grad = np.array([gt @ zt + gn @ zn, gt.sum() + gn.sum()])
        return loss, grad

    res = minimize(
        objective,
        np.zeros(2),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": int(maxiter)},
    )
    if not res.success:
        logger.warning("Linear calibration: %s", res.message)
    slope, bias = float(res.x[0]), float(res.x[1])
    return slope / std, bias - slope * mean / std


def linear_calibration(positive_scores, negative_scores, prior=0.5):
    """Fitted ``llr = a * score + b`` with its Cllr and the minCllr.

    Arguments
    ---------
    positive_scores, negative_scores : array
        Scores of the target and the non-target trials.
    prior : float
        Effective prior of the fit (``fit_linear_calibration``).

    Returns
    -------
    dict
        ``a``, ``b``, ``prior``, ``Cllr`` (bits, of the calibrated LLRs on
        the same trials: an optimistic figure) and ``minCllr`` (bits, PAV).

    Example
    -------
    >>> c = linear_calibration([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    >>> sorted(c), c["minCllr"] <= c["Cllr"] < 1
    (['Cllr', 'a', 'b', 'minCllr', 'prior'], True)
    """
    a, b = fit_linear_calibration(positive_scores, negative_scores, prior)
    tar = _scores(positive_scores, "positive_scores")
    non = _scores(negative_scores, "negative_scores")
    return {
        "a": a,
        "b": b,
        "prior": float(prior),
        "Cllr": cllr(a * tar + b, a * non + b),
        "minCllr": min_cllr(tar, non),
    }


def calibrated_llr(scores, a, b):
    """``a * scores + b`` (float64): natural-log LLRs of calibrated scores."""
    return float(a) * np.asarray(scores, dtype=np.float64) + float(b)
