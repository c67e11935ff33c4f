"""Teacher-defined class partitions shared by TRKD and GKD, and their
per-epoch statistics.

TRKD's confusion set and GKD's primary group are the same rule: the
smallest set of the teacher's top classes (by its posterior at a given
temperature) whose cumulative probability reaches a cutoff, at least the
top class. ``top_mass_set`` is that rule; ``PartitionStats`` accumulates
the size of the set and the teacher's masses per epoch without
synchronising host and device at every step.
"""

import torch

# Cumulative float32 sums landing exactly on the cutoff count as reaching
# it (e.g. 0.5 + 0.3 summed to 0.79999995 against a cutoff of 0.8).
SLACK = 1e-6


def top_mass_mask(probs, cutoff):
    """The top classes holding ``cutoff`` of the mass, as a bool mask.

    Classes ranked by ``probs`` (descending, ties in index order) are kept
    while the mass ranked above them is below ``cutoff - SLACK``.

    Example
    -------
    >>> p = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    >>> [top_mass_mask(p, c).int().tolist() for c in (0.7, 0.8)]
    [[[0, 1, 1, 0]], [[0, 1, 1, 0]]]
    """
    p_sorted, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    mass_before = torch.cumsum(p_sorted, -1) - p_sorted
    keep = mass_before < cutoff - SLACK
    return torch.zeros_like(keep).scatter(-1, order, keep)


def top_class_mask(probs):
    """Bool mask of the most probable class of each row (first on ties)."""
    top = probs.argmax(-1, keepdim=True)
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, top, True)


def top_mass_set(teacher_logits, cutoff, T=1.0, exclude=None):
    """The teacher's top classes holding ``cutoff`` of its posterior at
    temperature ``T``, as a ``[batch, classes]`` bool mask.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[batch, classes]`` teacher logits (no gradient is taken).
    cutoff : float
        Cumulative probability in (0, 1]; 1 keeps every class.
    T : float
        Temperature of the posterior the classes are ranked and cut on.
    exclude : torch.Tensor, optional
        ``[batch, classes]`` bool mask of classes set apart (TRKD's
        target): they are never in the set and the posterior is
        renormalised over the others.

    Returns
    -------
    torch.Tensor
        Bool mask: the smallest prefix of the ranked classes whose
        cumulative (renormalised) probability reaches ``cutoff``, and at
        least the top class.

    Example
    -------
    >>> t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    >>> top_mass_set(t, 0.8).int().tolist()
    [[1, 1, 0, 0, 0]]
    >>> gt = torch.tensor([[True, False, False, False, False]])
    >>> top_mass_set(t, 0.7, exclude=gt).int().tolist()
    [[0, 1, 1, 0, 0]]
    >>> top_mass_set(t, 0.7, T=4.0, exclude=gt).int().tolist()
    [[0, 1, 1, 1, 0]]
    """
    cutoff = float(cutoff)
    if not 0.0 < cutoff <= 1.0:
        raise ValueError(f"cutoff must be in (0, 1], got {cutoff}")
    if not 0.0 < float(T) < float("inf"):
        raise ValueError(f"partition temperature must be > 0, got {T}")
    p = (teacher_logits.detach().float() / T).softmax(-1)
    if exclude is None:
        exclude = torch.zeros_like(p, dtype=torch.bool)
    if cutoff >= 1.0:
        return ~exclude
    p = torch.where(exclude, torch.zeros_like(p), p)
    p = p / p.sum(-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    # An excluded class sorts last (p = 0) but can still be reached: remove
    # it; the top class stays (top_class_mask never picks an excluded class
    # unless every class is excluded).
    return (top_mass_mask(p, cutoff) | top_class_mask(p)) & ~exclude


def top_size_set(teacher_logits, fraction, exclude=None):
    """The teacher's ``k`` most probable classes outside ``exclude``, with
    ``k = max(1, ceil(fraction * n))`` of the ``n`` classes outside it, as
    a ``[batch, classes]`` bool mask (a cut by set size, not by mass).

    Example
    -------
    >>> t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    >>> gt = torch.tensor([[True, False, False, False, False]])
    >>> top_size_set(t, 0.5, exclude=gt).int().tolist()  # k = 2 of 4
    [[0, 1, 1, 0, 0]]
    >>> top_size_set(t, 0.01, exclude=gt).int().tolist()  # at least 1
    [[0, 1, 0, 0, 0]]
    """
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"set-size fraction must be in (0, 1], got {fraction}")
    t = teacher_logits.detach().float()
    if exclude is None:
        exclude = torch.zeros_like(t, dtype=torch.bool)
    n = t.shape[-1] - exclude.sum(-1)  # [batch]
    k = (fraction * n.double()).ceil().long().clamp_min(1)
    ranked = t.masked_fill(exclude, float("-inf")).argsort(-1, descending=True)
    rank = torch.empty_like(ranked).scatter_(
        -1, ranked, torch.arange(t.shape[-1]).expand_as(ranked).contiguous()
    )
    return (rank < k.unsqueeze(-1)) & ~exclude


class PartitionStats:
    """Per-epoch size of a teacher-defined class set and teacher masses.

    Accumulated on the device (a histogram of the set sizes and sums of
    the masses), read once per epoch by ``summary``, summed over the
    processes under DDP; ``state`` / ``load_state`` carry the sums across
    an intra-epoch checkpoint.

    Arguments
    ---------
    names : sequence of str
        Names of the masses passed to ``update`` (e.g. target, confusion,
        background).
    set_name : str
        Name of the set whose size is counted (``F`` for TRKD).

    Example
    -------
    >>> stats = PartitionStats(["in", "out"], set_name="P")
    >>> mask = torch.tensor([[True, False, False], [True, True, False]])
    >>> stats.update(mask, torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    >>> stats.summary()
    {'P_mean': 1.5, 'P_median': 1.0, 'mass_in': 0.7, 'mass_out': 0.3}
    >>> stats.summary()  # reset by the previous call
    {}
    """

    def __init__(self, names, set_name="F"):
        self.names, self.set_name = list(names), set_name
        self.reset()

    def reset(self):
        """Starts a new epoch."""
        self.histogram, self.masses = None, None

    @torch.no_grad()
    def update(self, mask, masses):
        """Adds a batch: ``mask`` ``[batch, classes]`` (the set), and
        ``masses`` ``[batch, len(names)]`` (the teacher's masses)."""
        sizes = mask.sum(-1)
        hist = torch.bincount(sizes, minlength=mask.shape[-1] + 1)
        hist = hist.to(torch.float64)
        total = masses.detach().to(torch.float64).sum(0)
        if self.histogram is None or len(self.histogram) != len(hist):
            self.histogram, self.masses = hist, total
        else:  # (sums recovered from a checkpoint are on the CPU)
            self.histogram = self.histogram.to(hist.device) + hist
            self.masses = self.masses.to(total.device) + total

    def state(self):
        """The sums so far, ``{name: tensor}`` (empty before any batch)."""
        if self.histogram is None:
            return {}
        return {"histogram": self.histogram, "masses": self.masses}

    def load_state(self, state):
        """Continues from the sums of ``state`` (see ``state``)."""
        self.reset()
        if state:
            self.histogram = state["histogram"].clone()
            self.masses = state["masses"].clone()

    def summary(self):
        """Mean and median set size and mean masses since the last call
        (empty if nothing was added); resets."""
        hist, masses = self.histogram, self.masses
        self.reset()
        if hist is None:
            return {}
        values = torch.cat([hist, masses])
        if torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        ):
            torch.distributed.all_reduce(values)
        hist, masses = values[: len(hist)], values[len(hist) :]
        count = float(hist.sum())
        sizes = torch.arange(len(hist), dtype=torch.float64, device=hist.device)
        median = int(torch.searchsorted(hist.cumsum(0), count / 2.0))
        out = {
            f"{self.set_name}_mean": float((sizes * hist).sum()) / count,
            f"{self.set_name}_median": float(median),
        }
        for name, mass in zip(self.names, masses.tolist()):
            out[f"mass_{name}"] = round(mass / count, 6)
        return out


class PartitionTerm:
    """Base of the distillation terms that log a teacher partition
    (``trkd.TRKDLoss``, ``gkd.GKDLoss``): checks the weights and
    temperatures, and gives the Brain the epoch statistics and their
    checkpoint state (``speechbrain_kd.checkpointing.TermStatistics``).

    Arguments
    ---------
    stats : PartitionStats
        Where the subclass's ``__call__`` records each batch.
    weights : dict
        ``{name: value}`` that must be finite and >= 0.
    temperatures : dict
        ``{name: value}`` that must be finite and > 0 (or None).
    """

    def __init__(self, stats, weights, temperatures):
        name = type(self).__name__
        for key, value in weights.items():
            if not 0 <= float(value) < float("inf"):
                raise ValueError(
                    f"{name} {key} must be a finite number >= 0, got {value!r}"
                )
        for key, value in temperatures.items():
            if value is not None and not 0 < float(value) < float("inf"):
                raise ValueError(
                    f"{name} {key} must be a finite number > 0, got {value!r}"
                )
        self.stats = stats

    def epoch_stats(self):
        """The set sizes and teacher masses since the last call."""
        return self.stats.summary()

    def stats_state(self):
        """The epoch's statistics so far (for intra-epoch checkpoints)."""
        return self.stats.state()

    def load_stats_state(self, state):
        """Continues the epoch's statistics from ``stats_state``."""
        self.stats.load_state(state)
