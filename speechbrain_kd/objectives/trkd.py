"""Triage knowledge distillation, TRKD (arXiv 2601.14699).

For each example, the teacher's non-target classes are triaged by a
cumulative-probability cutoff ``tau``: the *confusion set* F is the smallest
prefix of the non-target classes, sorted by the teacher's probability (at
the distillation temperature ``T`` by default, ``partition_T`` otherwise),
whose cumulative probability renormalised over the non-targets reaches
``tau``; the *background* B is the rest. (At temperature 1 with cosine
logits times 30 the teacher posterior is so peaked that F is a single
class in most rows once tau is small, and the confusion term vanishes:
``partition_T=1.0`` keeps that behaviour, for comparison.) TRKD distils
the three masses [target, F, B] and the distribution inside F, and drops the
distribution inside B. ``tau`` decreases over training
(``speechbrain_kd.schedules.TauCurriculum``). With ``tau = 1``, F holds every
non-target class and TRKD equals DKD with ``alpha=lambda_mass``,
``beta=lambda_conf``.
"""

import torch

from speechbrain_kd.objectives.dkd import masked_kl, mass_kl, target_mask
from speechbrain_kd.objectives.kd import check_logits
from speechbrain_kd.objectives.partition import (
    PartitionStats,
    PartitionTerm,
    top_mass_set,
    top_size_set,
)

CUTS = ("mass", "size")


def confusion_mask(teacher_logits, targets, tau, T=1.0, cut="mass"):
    """The confusion set F of each example, as a ``[batch, classes]`` mask.

    Never the target, at least one class per row. Raises ``ValueError``
    unless ``tau`` is in (0, 1] and ``cut`` in ``CUTS``.

    Arguments
    ---------
    teacher_logits : torch.Tensor
        ``[batch, classes]`` teacher logits.
    targets : torch.Tensor
        ``[batch]`` class indices.
    tau : float or torch.Tensor
        Cumulative-probability cutoff in (0, 1]; 1 keeps every non-target.
    T : float
        Temperature of the teacher posterior that ranks and cuts F.
    cut : str
        ``mass``: the fewest top non-targets holding ``tau`` of their mass;
        ``size``: the ``ceil(tau * (classes - 1))`` top non-targets.

    Example
    -------
    >>> t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    >>> y = torch.tensor([0])
    >>> [confusion_mask(t, y, 0.6, T=T).int().tolist() for T in (1.0, 4.0)]
    [[[0, 1, 0, 0, 0]], [[0, 1, 1, 1, 0]]]
    """
    tau = float(tau)
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    if cut not in CUTS:
        raise ValueError(f"TRKD cut must be one of {CUTS}, got {cut!r}")
    gt = target_mask(teacher_logits, targets)
    if cut == "size":
        return top_size_set(teacher_logits, tau, exclude=gt)
    return top_mass_set(teacher_logits, tau, T, exclude=gt)


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


def _trkd_terms(
    student_logits,
    teacher_logits,
    targets,
    tau,
    lambda_mass=1.0,
    lambda_conf=8.0,
    T=4.0,
    partition_T=None,
    cut="mass",
):
    """TRKD loss with its partition: ``(loss, confusion mask, teacher
    masses [target, F, B] at T)``; see ``trkd_loss``."""
    check_logits(student_logits, teacher_logits, targets, T)
    s = student_logits.float() / T
    t = teacher_logits.detach().float() / T
    gt = target_mask(s, targets)
    cut_T = T if partition_T is None else partition_T
    conf = confusion_mask(teacher_logits, targets, tau, cut_T, cut)
    teacher_masses = triage_masses(t, gt, conf)
    three_mass = mass_kl(teacher_masses, triage_masses(s, gt, conf))
    confusion = masked_kl(s, t, conf)
    loss = (lambda_mass * three_mass + lambda_conf * confusion).mean() * T**2
    return loss, conf, teacher_masses


def trkd_loss(
    student_logits,
    teacher_logits,
    targets,
    tau,
    lambda_mass=1.0,
    lambda_conf=8.0,
    T=4.0,
    partition_T=None,
    cut="mass",
):
    """TRKD: lambda_mass * three-mass KL + lambda_conf * confusion KL.

    Both terms are KL(teacher || student) at temperature ``T``, times T^2,
    with the sets defined by the teacher; batch mean.

    Arguments
    ---------
    student_logits, teacher_logits : torch.Tensor
        ``[batch, classes]`` logits; no gradient flows to the teacher.
    targets : torch.Tensor
        ``[batch]`` class indices.
    tau : float or torch.Tensor
        Cumulative-probability cutoff of the confusion set, in (0, 1].
    lambda_mass, lambda_conf : float
        Weights of the three-mass term and the within-confusion-set KL.
    T : float
        Softmax temperature.
    partition_T : float, optional
        Temperature the confusion set is cut at (None: ``T``).
    cut : str
        ``mass`` (default) or ``size`` (``confusion_mask``).

    Example
    -------
    >>> from speechbrain_kd.objectives.dkd import dkd_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> s, t = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    >>> y = torch.tensor([0, 1, 2, 3])
    >>> torch.allclose(trkd_loss(s, t, y, tau=1.0), dkd_loss(s, t, y))
    True
    >>> bool(trkd_loss(s, t, y, tau=0.3) >= 0)
    True
    """
    return _trkd_terms(
        student_logits,
        teacher_logits,
        targets,
        tau,
        lambda_mass,
        lambda_conf,
        T,
        partition_T,
        cut,
    )[0]


class TRKDLoss(PartitionTerm):
    """``trkd_loss`` as a distillation term that logs its triage per epoch.

    Same arguments as ``trkd_loss`` (but the tensors and ``tau``, which
    the Brain passes at every step). ``epoch_stats`` gives, for the
    training log, the mean and median size of the confusion set F and
    the teacher's mean masses of the target, F and the background B (at
    ``T``), so that the tau curriculum can be seen acting.

    Example
    -------
    >>> loss = TRKDLoss(T=4.0)
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> y = torch.tensor([0, 1, 2, 3])
    >>> torch.equal(loss(s, t, y, tau=0.5), trkd_loss(s, t, y, tau=0.5))
    True
    >>> sorted(loss.epoch_stats())
    ['F_mean', 'F_median', 'mass_background', 'mass_confusion', 'mass_target']
    """

    def __init__(
        self,
        lambda_mass=1.0,
        lambda_conf=8.0,
        T=4.0,
        partition_T=None,
        cut="mass",
    ):
        super().__init__(
            PartitionStats(["target", "confusion", "background"], "F"),
            dict(lambda_mass=lambda_mass, lambda_conf=lambda_conf),
            dict(T=T, partition_T=partition_T),
        )
        if cut not in CUTS:
            raise ValueError(f"TRKD cut must be one of {CUTS}, got {cut!r}")
        self.lambda_mass, self.lambda_conf = lambda_mass, lambda_conf
        self.T, self.partition_T, self.cut = T, partition_T, cut

    def __call__(self, student_logits, teacher_logits, targets, tau):
        loss, conf, masses = _trkd_terms(
            student_logits,
            teacher_logits,
            targets,
            tau,
            self.lambda_mass,
            self.lambda_conf,
            self.T,
            self.partition_T,
            self.cut,
        )
        self.stats.update(conf, masses)
        return loss
