"""Schedules of distillation hyperparameters, in training progress.

``TauCurriculum`` gives the TRKD cutoff tau; ``LinearWarmup`` ramps a loss
weight up (as mdistiller does for DKD). Their start and end are fractions
of the run's optimiser steps (``start_at``, ``end_at``) or optimiser steps
(``start_step``, ``end_step``), so that a 4-epoch and a 150-epoch run
follow the same shape. ``KDBrain`` calls ``at_step`` before every training
step. Their value depends on the step only, so they hold no state to
checkpoint: a run resumed in the middle of an epoch gets the values of an
uninterrupted one from the epoch and step counters.

Epoch settings (``start_epoch``, ``end_epoch``; ``LinearWarmup(epochs)``)
still parse, with a deprecation warning, and keep their per-epoch values.
"""

import logging
import math
import warnings

logger = logging.getLogger(__name__)

SHAPES = ("exponential", "linear", "cosine", "step")
# TRKD's paper (arXiv 2601.14699): tau = 1 until epoch 10 of 150, down to
# its end value at epoch 60.
PAPER_START_AT = 10 / 150
PAPER_END_AT = 60 / 150


def _deprecated(name, old, new):
    message = (
        f"{name}: {old} are deprecated: give {new} (fractions of the "
        "training's optimiser steps) so that the schedule keeps its shape "
        "whatever the number of epochs"
    )
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    logger.warning(message)


class Progress:
    """Where a value lies between a start and an end point of training.

    The points are fractions of the optimiser steps (``start_at``,
    ``end_at``), optimiser steps (``start_step``, ``end_step``) or, as a
    deprecated form, epochs (``start_epoch``, ``end_epoch``: the value is
    constant over an epoch). Steps and epochs, when given, take precedence
    over fractions.

    Example
    -------
    >>> p = Progress("x", 0.25, 0.75)
    >>> [p.fraction(s, 8) for s in (0, 2, 4, 6, 7)]
    [0.0, 0.0, 0.5, 1.0, 1.0]
    >>> Progress("x", start_step=2, end_step=6).fraction(4, 100)
    0.5
    """

    def __init__(
        self,
        name,
        start_at=0.0,
        end_at=1.0,
        start_step=None,
        end_step=None,
        start_epoch=None,
        end_epoch=None,
    ):
        self.name = name
        if start_epoch is not None or end_epoch is not None:
            self.unit, points = "epoch", (start_epoch, end_epoch)
            _deprecated(name, "start_epoch / end_epoch", "start_at / end_at")
        elif start_step is not None or end_step is not None:
            self.unit, points = "step", (start_step, end_step)
        else:
            self.unit, points = "at", (start_at, end_at)
        if None in points:
            raise ValueError(
                f"{name} needs both start_{self.unit} and end_{self.unit}, "
                f"got {points}"
            )
        self.start, self.end = (float(p) for p in points)
        if self.unit == "at" and not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(
                f"{name} needs 0 <= start_at < end_at <= 1 (fractions of "
                f"the optimiser steps), got {self.start}, {self.end}"
            )
        if self.end <= self.start:
            raise ValueError(
                f"{name} needs end_{self.unit} > start_{self.unit}, got "
                f"{self.start}, {self.end}"
            )

    def fraction(self, step, total_steps, epoch=None):
        """The progress in [0, 1] from start to end at optimiser ``step``
        (0-based) of ``total_steps`` (``epoch``: for the epoch form)."""
        if self.unit == "epoch":
            if epoch is None:
                raise ValueError(f"{self.name} is set in epochs: give epoch")
            here = float(epoch)
        elif self.unit == "step":
            here = float(step)
        else:
            if not total_steps or total_steps <= 0:
                raise ValueError(
                    f"{self.name} is set in fractions of training: the "
                    f"total number of steps must be > 0, got {total_steps}"
                )
            here = step / total_steps
        r = (here - self.start) / (self.end - self.start)
        return min(max(r, 0.0), 1.0)


class TauCurriculum:
    """Decreasing curriculum of the TRKD confusion-set cutoff tau.

    ``start`` before the start point, ``end`` after the end point, and for
    the progress ``r`` in [0, 1] in between (``Progress``):

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
    start_at, end_at : float
        Start and end points as fractions of the optimiser steps (default:
        the paper's 10/150 and 60/150).
    start_step, end_step : int, optional
        Start and end points in optimiser steps (instead of fractions).
    start_epoch, end_epoch : int, optional
        Deprecated: start and end epochs (tau then changes per epoch).
    shape : str
        One of ``exponential``, ``linear``, ``cosine``, ``step``.
    gamma : float
        Curvature of ``exponential`` (0 < gamma < 1; small = fast early drop).

    Example
    -------
    >>> tau = TauCurriculum(1.0, 0.05)  # the paper's proportions
    >>> [round(tau.at_step(s, 150), 4) for s in (0, 10, 35, 60, 149)]
    [1.0, 1.0, 0.0791, 0.05, 0.05]
    >>> tau.current
    0.05
    """

    def __init__(
        self,
        start=1.0,
        end=0.05,
        start_at=PAPER_START_AT,
        end_at=PAPER_END_AT,
        shape="exponential",
        gamma=0.001,
        start_step=None,
        end_step=None,
        start_epoch=None,
        end_epoch=None,
    ):
        if not 0.0 < end <= start <= 1.0:
            raise ValueError(
                "TauCurriculum needs 0 < end <= start <= 1, got "
                f"start={start}, end={end}"
            )
        if shape not in SHAPES:
            raise ValueError(
                f"TauCurriculum shape must be one of {SHAPES}, got {shape!r}"
            )
        if shape == "exponential" and not 0.0 < gamma < 1.0:
            raise ValueError(
                f"TauCurriculum gamma must be in (0, 1), got {gamma}"
            )
        self.progress = Progress(
            "TauCurriculum",
            start_at,
            end_at,
            start_step,
            end_step,
            start_epoch,
            end_epoch,
        )
        self.start, self.end = float(start), float(end)
        self.shape, self.gamma = shape, float(gamma)
        self.current = self.start

    def shaped(self, r):
        """tau at progress ``r`` in [0, 1] (exactly ``start`` at 0 and
        ``end`` at 1)."""
        a, b = self.start, self.end
        if r <= 0.0:
            return a
        if r >= 1.0:
            return b
        if self.shape == "exponential":
            g = self.gamma
            return b + (a - b) * (g**r - g) / (1.0 - g)
        if self.shape == "linear":
            return a + (b - a) * r
        if self.shape == "cosine":
            return b + (a - b) * (1.0 + math.cos(math.pi * r)) / 2.0
        return a if r < 1.0 else b

    def at_step(self, step, total_steps, epoch=None):
        """Sets and returns tau at optimiser ``step`` (0-based) of
        ``total_steps`` (``epoch``, 1-based: for the epoch form)."""
        r = self.progress.fraction(step, total_steps, epoch)
        self.current = float(self.shaped(r))
        return self.current

    def __call__(self, epoch):
        """Deprecated epoch form: sets and returns tau at ``epoch``."""
        return self.at_step(0, 0, epoch)


class LinearWarmup:
    """Loss-weight factor rising linearly from 0 to 1 until ``until`` of the
    optimiser steps (or ``steps`` steps; deprecated: ``epochs`` epochs, the
    factor of epoch e being e / epochs).

    Example
    -------
    >>> warm = LinearWarmup(until=0.5)
    >>> [warm.at_step(s, 8) for s in (0, 2, 4, 7)]
    [0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, until=None, steps=None, epochs=None):
        if until is not None and not 0 <= until <= 1:
            raise ValueError(
                f"LinearWarmup until must be a fraction in [0, 1], got {until}"
            )
        if steps is not None and steps < 0:
            raise ValueError(f"LinearWarmup steps must be >= 0, got {steps}")
        if epochs is not None:
            if epochs < 0:
                raise ValueError(
                    f"LinearWarmup epochs must be >= 0, got {epochs}"
                )
            _deprecated("LinearWarmup", "epochs", "until")
        self.until, self.steps, self.epochs = until, steps, epochs
        zero = not (until or steps or epochs)
        self.current = 1.0 if zero else 0.0

    def at_step(self, step, total_steps, epoch=None):
        """Sets and returns the factor at optimiser ``step`` (0-based)."""
        if self.epochs is not None:
            r = 1.0 if self.epochs == 0 else epoch / self.epochs
        elif self.steps is not None:
            r = 1.0 if self.steps == 0 else step / self.steps
        elif self.until:
            r = step / (total_steps * self.until)
        else:
            r = 1.0
        self.current = min(1.0, float(r))
        return self.current

    def __call__(self, epoch):
        """Deprecated epoch form: sets and returns the factor at ``epoch``."""
        return self.at_step(0, 0, epoch)
