"""Classic logit distillation (Hinton et al., 2015)."""

import torch.nn.functional as F


def check_logits(student, teacher, targets=None, T=1.0):
    """Shape and range checks shared by the logit objectives.

    Raises ``ValueError`` unless the ``student`` and ``teacher`` logits are
    non-empty ``[batch, classes]`` tensors of the same shape, ``targets``
    (if given) holds ``batch`` class indices in range, and ``T`` is a
    finite number > 0. Only shapes are read, except for the range of
    ``targets``, which is checked on CPU tensors only: on an accelerator
    it would synchronise the host with the device at every call
    (``KDBrain`` checks the targets of its first batch on the host, and an
    index out of range fails in the loss's indexing anyway).

    Example
    -------
    >>> import torch
    >>> check_logits(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 2]))
    >>> check_logits(torch.zeros(1, 3), torch.zeros(2, 3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: student and teacher logits must have the same [batch, ...
    """
    s_shape, t_shape = tuple(student.shape), tuple(teacher.shape)
    if len(s_shape) != 2 or s_shape != t_shape:
        raise ValueError(
            "student and teacher logits must have the same [batch, classes] "
            f"shape, got {s_shape} and {t_shape}"
        )
    if s_shape[0] == 0 or s_shape[1] == 0:
        raise ValueError(f"logits must be non-empty, got shape {s_shape}")
    if not (isinstance(T, (int, float)) and 0 < T < float("inf")):
        raise ValueError(f"temperature T must be a finite number > 0, got {T}")
    if targets is not None:
        if targets.numel() != s_shape[0]:
            raise ValueError(
                f"targets must hold {s_shape[0]} class indices, got shape "
                f"{tuple(targets.shape)}"
            )
        if targets.device.type == "cpu" and (
            targets.min() < 0 or targets.max() >= s_shape[1]
        ):
            raise ValueError(
                f"targets must be class indices in [0, {s_shape[1]}), got "
                f"{targets.min().item()}..{targets.max().item()}"
            )


def kd_loss(student_logits, teacher_logits, T=4.0):
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean.

    Of ``[batch, classes]`` logits, in float32, as a scalar; no gradient
    flows to the teacher. Raises ``ValueError`` as ``check_logits``.

    Example
    -------
    >>> import torch
    >>> s, t = torch.randn(4, 10), torch.randn(4, 10)
    >>> kd_loss(s, t).shape
    torch.Size([])
    >>> float(kd_loss(t, t))
    0.0
    """
    check_logits(student_logits, teacher_logits, T=T)
    log_p_s = F.log_softmax(student_logits.float() / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * T**2
