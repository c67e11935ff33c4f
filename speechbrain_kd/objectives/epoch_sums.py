"""Checkpoint state of the epoch sums that learnable terms log."""

import torch


class EpochSums:
    """Mixin for terms that keep their epoch statistics in ``self._sums``
    (``{name: float or 0-d tensor}`` with a count ``n``): their
    ``stats_state`` / ``load_stats_state`` for intra-epoch checkpoints
    (``speechbrain_kd.checkpointing.TermStatistics``).

    Example
    -------
    >>> class Term(EpochSums):
    ...     def __init__(self):
    ...         self._sums = {"cos": 0.0, "n": 0}
    >>> a, b = Term(), Term()
    >>> a._sums = {"cos": 1.5, "n": 3}
    >>> b.load_stats_state(a.stats_state())
    >>> b._sums
    {'cos': 1.5, 'n': 3}
    """

    def stats_state(self):
        """The epoch's sums so far, as tensors (empty before any batch)."""
        if not self._sums["n"]:
            return {}
        return {
            k: torch.as_tensor(v, dtype=torch.float64).detach().reshape(1)
            for k, v in self._sums.items()
        }

    def load_stats_state(self, state):
        """Continues the epoch's sums from ``stats_state``."""
        for key, value in state.items():
            total = float(value.sum())
            self._sums[key] = int(round(total)) if key == "n" else total
