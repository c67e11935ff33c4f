"""Complexity objective: drives a model's FLOPs towards a target ratio.

Gómez and Bäckström (arXiv 2601.13704) make the widths of the layers
continuous (``speechbrain_kd.lobes.dynamic``) so that the analytic FLOP
count of the model is a differentiable function of them; the loss below
pushes its ratio to the full model's FLOPs towards a target (0.5, 0.25,
0.125...) while the task (or distillation) loss pulls the widths up.

``complexity_loss`` is a pure function of the ratio. ``ComplexityLoss``
wraps it as a ``KDBrain`` distillation term that takes no tensor input::

    distill_terms:
        complexity:
            fn: !new:speechbrain_kd.objectives.complexity.ComplexityLoss
                model: !ref <embedding_model>
                target: 0.25
            weight: 10.0

It keeps a plain (unregistered) reference to the model, so it holds no
parameter of its own: the widths are trained, checkpointed and wrapped
(DDP) as part of the model, once.
"""

import torch

MODES = ("abs", "squared", "hinge")


def complexity_loss(ratio, target, mode="abs"):
    """Distance of a FLOPs ratio from its target.

    Arguments
    ---------
    ratio : torch.Tensor
        Scalar, FLOPs of the model at its current widths / full FLOPs.
    target : float
        Target ratio in ``(0, 1]``.
    mode : str
        ``abs``: ``|ratio - target|``, a push of constant size towards the
        target from both sides (the widths settle at the target);
        ``squared``: ``(ratio - target)^2``; ``hinge``:
        ``max(0, ratio - target)``, a budget (no push up below it).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Example
    -------
    >>> import torch
    >>> r = torch.tensor(0.75)
    >>> [float(complexity_loss(r, 0.5, m)) for m in ("abs", "squared")]
    [0.25, 0.0625]
    >>> float(complexity_loss(torch.tensor(0.25), 0.5, "hinge"))
    0.0
    """
    if mode not in MODES:
        raise ValueError(
            f"complexity_loss: mode must be in {MODES}, got {mode!r}"
        )
    diff = ratio - target
    if mode == "abs":
        return diff.abs()
    if mode == "squared":
        return diff * diff
    return torch.relu(diff)


class ComplexityLoss(torch.nn.Module):
    """``complexity_loss`` of a dynamic-width model, as a distillation term.

    Arguments
    ---------
    model : torch.nn.Module
        A model with ``flops_ratio()`` (differentiable), e.g.
        ``speechbrain_kd.lobes.dynamic.DynamicECAPA``.
    target : float
        Target FLOPs ratio in ``(0, 1]``.
    mode : str
        See ``complexity_loss``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_kd.lobes.dynamic import DynamicECAPA
    >>> model = DynamicECAPA(20, channels=[16, 16, 16, 16, 48],
    ...                      attention_channels=8, res2net_scale=4)
    >>> term = ComplexityLoss(model, target=0.5)
    >>> term().backward()
    >>> bool(model.width["channels"].grad > 0)  # descent narrows it
    True
    >>> list(term.parameters())
    []
    """

    def __init__(self, model, target, mode="abs"):
        super().__init__()
        if not callable(getattr(model, "flops_ratio", None)):
            raise TypeError(
                "ComplexityLoss: model must have a flops_ratio() method "
                f"(e.g. DynamicECAPA), got {type(model).__name__}"
            )
        if isinstance(target, bool) or not 0.0 < float(target) <= 1.0:
            raise ValueError(
                f"ComplexityLoss: target must be in (0, 1], got {target!r}"
            )
        if mode not in MODES:
            raise ValueError(
                f"ComplexityLoss: mode must be in {MODES}, got {mode!r}"
            )
        # A tuple, not an attribute: the model is not a sub-module here.
        self._model = (model,)
        self.target, self.mode = float(target), mode

    @property
    def model(self):
        """The model whose FLOPs are constrained."""
        return self._model[0]

    def forward(self):
        """The loss at the model's current widths."""
        return complexity_loss(self.model.flops_ratio(), self.target, self.mode)

    @torch.no_grad()
    def epoch_stats(self):
        """FLOPs ratio (and pruned widths, if known), for the train log."""
        stats = {"flops_ratio": round(float(self.model.flops_ratio()), 4)}
        width_stats = getattr(self.model, "width_stats", None)
        if callable(width_stats):
            stats.update(width_stats())
        return stats
