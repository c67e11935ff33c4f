"""Grouped knowledge distillation, GKD (Zhao et al., AAAI 2023).

The classes are split per example by the teacher's softened prediction
(temperature ``T``): the *primary group* is the smallest set of top classes
whose cumulative probability reaches ``threshold``; the rest is the
*secondary group*. GKD keeps two of the three parts of the KD loss over
these groups: Binary-KD (the [primary, secondary] masses) and Primary-KD
(the distribution inside the primary group), and drops Secondary-KD (the
distribution inside the tail). Unlike DKD and TRKD, the target is not set
apart: it is in the primary group whenever the teacher ranks it high, and
the cut is fixed (no curriculum).
"""

import torch

from speechbrain_kd.objectives.dkd import masked_kl, mass_kl
from speechbrain_kd.objectives.kd import check_logits
from speechbrain_kd.objectives.partition import (
    PartitionStats,
    PartitionTerm,
    top_mass_set,
)


def primary_mask(teacher_logits, threshold, T=1.0):
    """The primary group of each example, as a ``[batch, classes]`` mask.

    The smallest set of top classes of ``softmax(teacher_logits / T)``
    whose mass reaches ``threshold`` (``top_mass_set``), at least the top
    class. Raises ``ValueError`` unless ``threshold`` is in (0, 1].
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return top_mass_set(teacher_logits, threshold, T)


def group_masses(logits, primary):
    """[primary, secondary] probability masses, ``[batch, 2]``.

    Example
    -------
    >>> import torch
    >>> primary = torch.tensor([[True, False, False, False]])
    >>> group_masses(torch.zeros(1, 4), primary).tolist()
    [[0.25, 0.75]]
    """
    p = logits.softmax(-1)
    mass = torch.where(primary, p, torch.zeros_like(p)).sum(-1)
    return torch.stack([mass, 1.0 - mass], -1)


def gkd_loss(
    student_logits,
    teacher_logits,
    threshold=0.9,
    lambda_binary=1.0,
    lambda_primary=8.0,
    T=4.0,
    targets=None,
):
    """GKD: lambda_binary * Binary-KD + lambda_primary * Primary-KD.

    Both terms are KL(teacher || student) at temperature ``T``, times T^2,
    with the groups cut on the teacher's prediction at ``T``; batch mean.

    Arguments
    ---------
    student_logits, teacher_logits : torch.Tensor
        ``[batch, classes]`` logits; no gradient flows to the teacher.
    threshold : float
        Cumulative probability of the primary group, in (0, 1].
    lambda_binary, lambda_primary : float
        Weights of the [primary, secondary] masses and the within-primary KL.
    T : float
        Softmax temperature.
    targets : torch.Tensor, optional
        ``[batch]`` class indices, only checked against the logits.

    Example
    -------
    >>> from speechbrain_kd.objectives.kd import kd_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> s, t = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    >>> full = gkd_loss(s, t, threshold=1.0, lambda_primary=1.0)
    >>> torch.allclose(full, kd_loss(s, t), atol=1e-5)  # one group: classic KD
    True
    """
    return _gkd_terms(
        student_logits,
        teacher_logits,
        threshold,
        lambda_binary,
        lambda_primary,
        T,
        targets,
    )[0]


def _gkd_terms(
    student_logits,
    teacher_logits,
    threshold=0.9,
    lambda_binary=1.0,
    lambda_primary=8.0,
    T=4.0,
    targets=None,
):
    """GKD loss with its partition: ``(loss, primary mask, teacher masses
    [primary, secondary] at T)``; see ``gkd_loss``."""
    check_logits(student_logits, teacher_logits, targets, T)
    s = student_logits.float() / T
    t = teacher_logits.detach().float() / T
    primary = primary_mask(teacher_logits, threshold, T)
    teacher_masses = group_masses(t, primary)
    binary = mass_kl(teacher_masses, group_masses(s, primary))
    within = masked_kl(s, t, primary)
    loss = (lambda_binary * binary + lambda_primary * within).mean() * T**2
    return loss, primary, teacher_masses


class GKDLoss(PartitionTerm):
    """``gkd_loss`` as a distillation term that logs its groups per epoch.

    Same arguments as ``gkd_loss`` (but the tensors). ``epoch_stats``
    gives the mean and median size of the primary group P and the
    teacher's mean masses of the primary and secondary groups (at ``T``).

    Example
    -------
    >>> import torch
    >>> loss = GKDLoss(threshold=0.5)
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> torch.equal(loss(s, t), gkd_loss(s, t, threshold=0.5))
    True
    >>> sorted(loss.epoch_stats())
    ['P_mean', 'P_median', 'mass_primary', 'mass_secondary']
    """

    def __init__(
        self, threshold=0.9, lambda_binary=1.0, lambda_primary=8.0, T=4.0
    ):
        super().__init__(
            PartitionStats(["primary", "secondary"], "P"),
            dict(lambda_binary=lambda_binary, lambda_primary=lambda_primary),
            dict(T=T),
        )
        if not 0 < float(threshold) <= 1:
            raise ValueError(
                f"GKDLoss threshold must be in (0, 1], got {threshold}"
            )
        self.threshold, self.T = threshold, T
        self.lambda_binary, self.lambda_primary = lambda_binary, lambda_primary

    def __call__(self, student_logits, teacher_logits, targets=None):
        loss, primary, masses = _gkd_terms(
            student_logits,
            teacher_logits,
            self.threshold,
            self.lambda_binary,
            self.lambda_primary,
            self.T,
            targets,
        )
        self.stats.update(primary, masses)
        return loss
