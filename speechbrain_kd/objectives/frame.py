"""Frame-level distillation: cosine distances between tapped layers.

The frame-level part of multi-level x-vector knowledge distillation (Liu,
Sahidullah and Kinnunen, arXiv 2303.01125, see
``speechbrain_kd.objectives.embedding``): a student layer reproduces the
frame-level output of a teacher layer (e.g. the narrow 512-channel frame4
or the wide 1500-channel frame5 of an x-vector), frame by frame.
``frame_cosine_distance`` is the distance, a pure function of tensors;
``FrameDistillation`` is the ``torch.nn.Module`` term for ``KDBrain``'s
``distill_terms`` that holds the student's projection head.
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.frames import frame_mask
from speechbrain_kd.objectives.layers import (
    _channels_last,
    _get_tap,
    _projection,
)


def frame_cosine_distance(student, teacher, lengths=None, eps=1e-8):
    """Cosine distance between frame-level outputs, over valid frames only.

    The distance ``1 - cos`` of each frame is averaged over the valid frames
    of each utterance (``lengths``), then over the batch: padded frames
    never count, and every utterance weighs the same.

    Arguments
    ---------
    student, teacher : torch.Tensor
        ``[batch, time, dim]`` frame-level outputs, time-aligned.
    lengths : torch.Tensor, optional
        ``[batch]`` relative lengths (SpeechBrain's ``wav_lens``).
    eps : float
        Guards the norms.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 2].

    Example
    -------
    >>> import torch
    >>> s = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    >>> t = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    >>> frame_cosine_distance(s, t)
    tensor(1.)
    >>> frame_cosine_distance(s, t, lengths=torch.tensor([0.5]))
    tensor(0.)
    """
    if student.dim() != 3 or student.shape != teacher.shape:
        raise ValueError(
            "frame-level student and teacher outputs must both be "
            f"[batch, time, dim] of equal shape, got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)}"
        )
    dist = 1.0 - F.cosine_similarity(student, teacher, dim=-1, eps=eps)
    mask = frame_mask(lengths, dist.shape[1]).to(dist.device)
    mask = mask.expand_as(dist).to(dist.dtype)
    per_utt = (dist * mask).sum(1) / mask.sum(1)
    return per_utt.mean()


class FrameDistillation(torch.nn.Module):
    """Frame-by-frame cosine distance between a student and a teacher layer.

    Both layers must run at the same frame rate (same features hop); the
    student's frames go through a per-frame linear head when the channel
    counts differ. Padded frames are masked with ``lengths``.

    Arguments
    ---------
    student_layer, teacher_layer : str
        Aliases of ``student_taps`` / ``teacher_taps``.
    student_dim, teacher_dim : int
        Channels of the two layers.
    student_channels_first, teacher_channels_first : bool
        True for ``[batch, channels, time]`` outputs (ECAPA-TDNN blocks),
        False for ``[batch, time, channels]`` (SpeechBrain's Xvector).
    project : str
        ``auto``, ``always`` or ``never`` (see ``EmbeddingDistillation``).

    Example
    -------
    >>> import torch
    >>> loss = FrameDistillation("frame4", "narrowBN", 8, 32)
    >>> value = loss(
    ...     lengths=torch.tensor([1.0, 0.6]),
    ...     student_frame4=torch.randn(2, 20, 8),
    ...     teacher_narrowBN=torch.randn(2, 20, 32),
    ... )
    >>> value.shape
    torch.Size([])
    """

    def __init__(
        self,
        student_layer,
        teacher_layer,
        student_dim,
        teacher_dim,
        student_channels_first=False,
        teacher_channels_first=False,
        project="auto",
    ):
        super().__init__()
        self.student_layer = student_layer
        self.teacher_layer = teacher_layer
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.student_channels_first = student_channels_first
        self.teacher_channels_first = teacher_channels_first
        self.projection = _projection(student_dim, teacher_dim, project)

    def forward(self, lengths=None, **taps):
        """Masked frame-level cosine distance (scalar)."""
        student = _channels_last(
            _get_tap(taps, "student", self.student_layer),
            self.student_channels_first,
        )
        teacher = _channels_last(
            _get_tap(taps, "teacher", self.teacher_layer),
            self.teacher_channels_first,
        )
        for side, x, dim in (
            ("student", student, self.student_dim),
            ("teacher", teacher, self.teacher_dim),
        ):
            if x.shape[-1] != dim:
                raise ValueError(
                    f"FrameDistillation: the {side} layer "
                    f"{getattr(self, side + '_layer')!r} has {x.shape[-1]} "
                    f"channels, {side}_dim is {dim} (or is its layout "
                    f"{side}_channels_first="
                    f"{not getattr(self, side + '_channels_first')}?)"
                )
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(
                f"FrameDistillation: student layer {self.student_layer!r} has "
                f"{student.shape[1]} frames, teacher layer "
                f"{self.teacher_layer!r} {teacher.shape[1]}: both need the "
                "same feature frame rate (hop length) and 'same' padding"
            )
        return frame_cosine_distance(
            self.projection(student).float(),
            teacher.detach().float(),
            lengths,
        )
