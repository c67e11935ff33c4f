"""Triage knowledge distillation, TRKD (arXiv 2601.14699).

For each example, the teacher's non-target classes are triaged by a
cumulative-probability cutoff ``tau``: the *confusion set* F is the smallest
prefix of the non-target classes, sorted by the teacher's probability (at
temperature 1), whose cumulative probability renormalised over the
non-targets reaches ``tau``; the *background* B is the rest. TRKD distils
the three masses [target, F, B] and the distribution inside F, and drops the
distribution inside B. ``tau`` decreases over training
(``speechbrain_kd.schedules.TauCurriculum``). With ``tau = 1``, F holds every
non-target class and TRKD equals DKD with ``alpha=lambda_mass``,
``beta=lambda_conf``.
"""

import torch

from speechbrain_kd.objectives.dkd import masked_kl, mass_kl, target_mask
from speechbrain_kd.objectives.kd import check_logits


def confusion_mask(teacher_logits, targets, tau):
    """The confusion set F of each example, as a ``[batch, classes]`` mask.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[batch, classes]`` teacher logits (temperature 1 is used here).
    targets : torch.Tensor
        ``[batch]`` class indices.
    tau : float or torch.Tensor
        Cumulative-probability cutoff in (0, 1]; ``tau >= 1`` keeps every
        non-target class.

    Returns
    -------
    torch.Tensor
        Bool mask, True for the classes in F (never the target; at least
        one class per row).

    Example
    -------
    >>> t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    >>> confusion_mask(t, torch.tensor([0]), 0.7).int().tolist()
    [[0, 1, 1, 0, 0]]
    >>> confusion_mask(t, torch.tensor([0]), 0.6).int().tolist()
    [[0, 1, 0, 0, 0]]
    """
    tau = float(tau)
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    gt = target_mask(teacher_logits, targets)
    if tau >= 1.0:
        return ~gt
    p = teacher_logits.detach().float().softmax(-1)
    q = torch.where(gt, torch.zeros_like(p), p)
    q = q / q.sum(-1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    # The target sorts last (q = 0) but can still be reached: remove it, and
    # keep the top non-target class when nothing else is left.
    in_f = top_mass_mask(q, tau) & ~gt
    top = top_class_mask(q) & ~gt
    empty = ~in_f.any(-1, keepdim=True)
    return in_f | (top & empty)


def top_mass_mask(probs, cutoff, slack=0.0):
    """The top classes holding ``cutoff`` of the mass, as a bool mask.

    Classes are ranked by ``probs`` (descending, ties in index order); a
    class is kept iff the mass of the classes ranked above it is below
    ``cutoff - slack``: the smallest prefix whose cumulative mass reaches
    the cutoff.

    Example
    -------
    >>> p = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    >>> top_mass_mask(p, 0.7).int().tolist()
    [[0, 1, 1, 0]]
    """
    p_sorted, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    mass_before = torch.cumsum(p_sorted, -1) - p_sorted
    keep = mass_before < cutoff - slack
    return torch.zeros_like(keep).scatter(-1, order, keep)


def top_class_mask(probs):
    """Bool mask of the most probable class of each row (first on ties)."""
    top = probs.argmax(-1, keepdim=True)
    return torch.zeros_like(probs, dtype=torch.bool).scatter(-1, top, True)


def triage_masses(logits, gt, conf):
    """[target, confusion, background] probability masses, ``[batch, 3]``.

    Example
    -------
    >>> logits = torch.zeros(1, 4)
    >>> gt = torch.tensor([[True, False, False, False]])
    >>> conf = torch.tensor([[False, True, True, False]])
    >>> triage_masses(logits, gt, conf).tolist()
    [[0.25, 0.5, 0.25]]
    """
    p = logits.softmax(-1)
    zero = torch.zeros_like(p)
    background = ~(gt | conf)
    return torch.stack(
        [
            torch.where(gt, p, zero).sum(-1),
            torch.where(conf, p, zero).sum(-1),
            torch.where(background, p, zero).sum(-1),
        ],
        -1,
    )


def trkd_loss(
    student_logits,
    teacher_logits,
    targets,
    tau,
    lambda_mass=1.0,
    lambda_conf=8.0,
    T=4.0,
):
    """TRKD: lambda_mass * three-mass KL + lambda_conf * confusion KL.

    Both terms are KL(teacher || student) at temperature ``T``, times T^2,
    with the sets defined by the teacher; batch mean.

    Arguments
    ---------
    student_logits : torch.Tensor
        Student logits, ``[batch, classes]``.
    teacher_logits : torch.Tensor
        Teacher logits, ``[batch, classes]`` (no gradient flows to them).
    targets : torch.Tensor
        Class indices, ``[batch]``.
    tau : float or torch.Tensor
        Cumulative-probability cutoff of the confusion set, in (0, 1].
    lambda_mass : float
        Weight of the [target, confusion, background] mass term.
    lambda_conf : float
        Weight of the within-confusion-set term.
    T : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> from speechbrain_kd.objectives.dkd import dkd_loss
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> y = torch.tensor([0, 1, 2, 3])
    >>> torch.allclose(trkd_loss(s, t, y, tau=1.0), dkd_loss(s, t, y))
    True
    >>> bool(trkd_loss(s, t, y, tau=0.3) >= 0)
    True
    """
    check_logits(student_logits, teacher_logits, targets, T)
    s = student_logits.float() / T
    t = teacher_logits.detach().float() / T
    gt = target_mask(s, targets)
    conf = confusion_mask(teacher_logits, targets, tau)
    three_mass = mass_kl(triage_masses(t, gt, conf), triage_masses(s, gt, conf))
    confusion = masked_kl(s, t, conf)
    return (lambda_mass * three_mass + lambda_conf * confusion).mean() * T**2
