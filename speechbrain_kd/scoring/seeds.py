"""Intervals of a paired difference that cover both the test speakers and
the training seeds.

A run's figure varies with the speakers drawn for the test set and with
the seed it was trained with. Two intervals of ``mean over seeds of (a -
b)``, paired seed by seed and speaker resample by speaker resample (the
same speaker draws for every run: ``resamples`` with one seed):

- ``seed_speaker_interval``: the seeds are resampled with replacement
  together with the speakers (replicate ``r`` of a two-level bootstrap
  averages the differences at speaker resample ``r`` of seeds drawn for
  it);
- ``seed_t_interval``: a Student t interval over the per-seed paired
  differences (on all trials), the seed spread alone.
"""

import math

import numpy


def seed_speaker_interval(a, b, seed=0):
    """Mean paired difference ``a - b`` and its 95 % interval over speakers
    and seeds.

    Arguments
    ---------
    a, b : dict
        ``{training seed: array of the figure on each speaker resample}``
        for two systems, the same resamples (and count) in every array.
    seed : int
        Seed of the draw of training seeds.

    Returns
    -------
    tuple
        ``(seeds, low, high)``: the common seeds and the interval.

    Example
    -------
    >>> a = {1: numpy.array([5.0, 6.0, 7.0]), 2: numpy.array([5.5, 6.5, 7.5])}
    >>> b = {1: numpy.array([4.0, 5.0, 6.0]), 2: numpy.array([5.5, 6.5, 7.5])}
    >>> seeds, low, high = seed_speaker_interval(a, b)
    >>> seeds, bool(0.0 <= low <= high <= 1.0)
    ([1, 2], True)
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("seed_speaker_interval: no common training seed")
    diffs = numpy.stack(
        [numpy.asarray(a[s], float) - numpy.asarray(b[s], float) for s in seeds]
    )  # [seeds, resamples]
    rng = numpy.random.default_rng(seed)
    n, num = diffs.shape
    picked = rng.integers(0, n, (num, n))  # seeds drawn for each resample
    draws = diffs[picked, numpy.arange(num)[:, None]].mean(1)
    low, high = numpy.percentile(draws, [2.5, 97.5])
    return seeds, float(low), float(high)


def seed_t_interval(a, b):
    """Mean paired difference ``a - b`` over seeds, with its 95 % Student t
    interval (``None`` bounds with one seed).

    Arguments
    ---------
    a, b : dict
        ``{training seed: figure on all trials}``.

    Returns
    -------
    tuple
        ``(seeds, mean, low, high)``.

    Example
    -------
    >>> seeds, mean, low, high = seed_t_interval({1: 5.0, 2: 6.0, 3: 7.0},
    ...                                          {1: 4.0, 2: 4.0, 3: 4.0})
    >>> seeds, mean, round(low, 3), round(high, 3)
    ([1, 2, 3], 2.0, -0.484, 4.484)
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("seed_t_interval: no common training seed")
    d = numpy.array([float(a[s]) - float(b[s]) for s in seeds])
    mean = float(d.mean())
    if len(d) < 2:
        return seeds, mean, None, None
    from scipy.stats import t

    half = t.ppf(0.975, len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return seeds, mean, float(mean - half), float(mean + half)
