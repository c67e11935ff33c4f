"""Confidence intervals of verification figures by bootstrap over speakers.

Trials are not independent: every trial of a test speaker shares that
speaker's recordings. The speakers are resampled with replacement, each
keeping its trials (a trial belongs to the speaker of its enrolment
utterance), and a figure (EER, minDCF, or the difference between two
systems scored on the same trials) is recomputed on every resample; the
95 % interval is the 2.5-97.5 percentile range.
"""

import numpy

from speechbrain_kd.scoring.metrics import compute_eer, compute_min_dcf


def speaker_index(trial_speakers):
    """``{speaker: array of trial positions}``."""
    groups = {}
    for i, spk in enumerate(trial_speakers):
        groups.setdefault(spk, []).append(i)
    return {k: numpy.asarray(v) for k, v in groups.items()}


def resamples(trial_speakers, num=1000, seed=0):
    """``num`` bootstrap resamples of the trials: arrays of positions, the
    trials of speakers drawn with replacement.

    Example
    -------
    >>> draws = list(resamples(["a", "a", "b"], num=3, seed=1))
    >>> len(draws), all(len(d) >= 1 for d in draws)
    (3, True)
    """
    groups = speaker_index(trial_speakers)
    speakers = sorted(groups)
    rng = numpy.random.default_rng(seed)
    for _ in range(num):
        picked = rng.integers(0, len(speakers), len(speakers))
        yield numpy.concatenate([groups[speakers[i]] for i in picked])


def eer_of(scores, labels):
    """EER (percent) of scores with 0/1 labels."""
    scores, labels = numpy.asarray(scores), numpy.asarray(labels, bool)
    eer, _ = compute_eer(scores[labels], scores[~labels])
    return 100.0 * float(eer)


def min_dcf_of(scores, labels, p_target=0.01):
    """Normalised minDCF of scores with 0/1 labels."""
    scores, labels = numpy.asarray(scores), numpy.asarray(labels, bool)
    dcf, _ = compute_min_dcf(scores[labels], scores[~labels], p_target)
    return float(dcf) / min(p_target, 1 - p_target)


def interval(figure, systems, labels, trial_speakers, num=1000, seed=0):
    """A figure and its 95 % bootstrap interval over speakers.

    Arguments
    ---------
    figure : callable
        ``figure(*scores_of_each_system, labels)`` -> float, e.g.
        ``eer_of`` for one system or ``lambda a, b, y: eer_of(a, y) -
        eer_of(b, y)`` for a paired difference.
    systems : list of array
        Per-trial scores of each system (same trials, same order).
    labels : array
        1 for target trials, 0 for non-target ones.
    trial_speakers : list
        The speaker each trial belongs to (its enrolment speaker).
    num, seed : int
        Number of resamples and their seed.

    Returns
    -------
    tuple
        ``(value on all trials, low, high)``.

    Example
    -------
    >>> rng = numpy.random.default_rng(0)
    >>> y = numpy.array([1, 0] * 200)
    >>> s = y + rng.normal(0, 0.8, 400)
    >>> spk = [f"s{i % 20}" for i in range(400)]
    >>> value, low, high = interval(eer_of, [s], y, spk, num=200)
    >>> low <= value <= high
    True
    """
    systems = [numpy.asarray(s, dtype=float) for s in systems]
    labels = numpy.asarray(labels, dtype=int)
    value = figure(*systems, labels)
    draws = []
    for idx in resamples(trial_speakers, num, seed):
        y = labels[idx]
        if y.min() == y.max():  # one class only: no EER
            continue
        draws.append(figure(*(s[idx] for s in systems), y))
    low, high = numpy.percentile(draws, [2.5, 97.5])
    return float(value), float(low), float(high)
