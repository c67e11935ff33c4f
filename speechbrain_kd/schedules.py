"""Schedules of distillation hyperparameters, as functions of the epoch.

``TauCurriculum`` gives the TRKD cutoff tau per epoch; ``LinearWarmup``
ramps a loss weight up over the first epochs (as mdistiller does for DKD).
``KDBrain`` calls them at the start of every training epoch. Their value
depends on the epoch only, so they hold no state to checkpoint: a resumed
run gets the values of an uninterrupted one from the epoch counter.
"""

import math

SHAPES = ("exponential", "linear", "cosine", "step")


class TauCurriculum:
    """Decreasing curriculum of the TRKD confusion-set cutoff tau.

    ``start`` before ``start_epoch``, ``end`` after ``end_epoch``, and for
    the progress ``r = (epoch - start_epoch) / (end_epoch - start_epoch)``
    in between:

    - ``exponential``:
      ``end + (start - end) * (gamma**r - gamma) / (1 - gamma)``
    - ``linear``: ``start + (end - start) * r``
    - ``cosine``: ``end + (start - end) * (1 + cos(pi * r)) / 2``
    - ``step``: ``start`` until ``r`` reaches 1, then ``end``.

    Arguments
    ---------
    start : float
        Initial tau, in (0, 1].
    end : float
        Final tau, in (0, start].
    start_epoch : int
        Last epoch at ``start``.
    end_epoch : int
        First epoch at ``end``.
    shape : str
        One of ``exponential``, ``linear``, ``cosine``, ``step``.
    gamma : float
        Curvature of ``exponential`` (0 < gamma < 1; small = fast early drop).

    Example
    -------
    >>> tau = TauCurriculum(1.0, 0.05, start_epoch=10, end_epoch=60)
    >>> tau(5), tau(10), tau(60), tau(70)
    (1.0, 1.0, 0.05, 0.05)
    >>> round(tau(35), 4)
    0.0791
    >>> tau.current == tau.value(35)
    True
    """

    def __init__(
        self,
        start=1.0,
        end=0.05,
        start_epoch=10,
        end_epoch=60,
        shape="exponential",
        gamma=0.001,
    ):
        if not 0.0 < end <= start <= 1.0:
            raise ValueError(
                "TauCurriculum needs 0 < end <= start <= 1, got "
                f"start={start}, end={end}"
            )
        if end_epoch <= start_epoch:
            raise ValueError(
                f"TauCurriculum needs end_epoch > start_epoch, got "
                f"start_epoch={start_epoch}, end_epoch={end_epoch}"
            )
        if shape not in SHAPES:
            raise ValueError(
                f"TauCurriculum shape must be one of {SHAPES}, got {shape!r}"
            )
        if shape == "exponential" and not 0.0 < gamma < 1.0:
            raise ValueError(
                f"TauCurriculum gamma must be in (0, 1), got {gamma}"
            )
        self.start, self.end = float(start), float(end)
        self.start_epoch, self.end_epoch = start_epoch, end_epoch
        self.shape, self.gamma = shape, float(gamma)
        self.epoch = 0
        self.current = self.start

    def value(self, epoch):
        """tau at ``epoch``, without changing the state."""
        r = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        r = min(max(r, 0.0), 1.0)
        a, b = self.start, self.end
        if self.shape == "exponential":
            g = self.gamma
            return b + (a - b) * (g**r - g) / (1.0 - g)
        if self.shape == "linear":
            return a + (b - a) * r
        if self.shape == "cosine":
            return b + (a - b) * (1.0 + math.cos(math.pi * r)) / 2.0
        return a if r < 1.0 else b

    def __call__(self, epoch):
        """Sets and returns tau for ``epoch``."""
        self.epoch = int(epoch)
        self.current = float(self.value(epoch))
        return self.current


class LinearWarmup:
    """Loss-weight factor rising linearly from 0 to 1 over ``epochs`` epochs.

    Example
    -------
    >>> warm = LinearWarmup(4)
    >>> [warm(e) for e in (1, 2, 4, 9)]
    [0.25, 0.5, 1.0, 1.0]
    """

    def __init__(self, epochs=1):
        if epochs < 0:
            raise ValueError(f"LinearWarmup epochs must be >= 0, got {epochs}")
        self.epochs = epochs
        self.current = 1.0 if epochs == 0 else 0.0

    def __call__(self, epoch):
        """Sets and returns the factor for ``epoch`` (1-based)."""
        self.current = (
            1.0 if self.epochs == 0 else min(1.0, epoch / self.epochs)
        )
        return self.current
