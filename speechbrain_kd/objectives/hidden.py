"""Layer-to-layer hidden-state distillation from a self-supervised teacher.

DistilHuBERT (Chang, Yang and Lee, ICASSP 2022) trains a small student to
predict hidden layers of a HuBERT teacher with, per frame, an L1 distance
and a cosine-similarity term::

    L = mean_t [ mean_d |h_t - s_t| - log sigmoid(cos(h_t, s_t)) ]

(``h`` the teacher's frame, ``s`` the student's prediction of it). Here it
distils chosen layers of a WavLM teacher into chosen blocks of a student
(the MLP-Mixer of ``speechbrain_kd.lobes.mixer``), each pair through its own
linear projection head, as in the MLP-Mixer compression of WavLM (IEEE
Access, 2025).

- ``hidden_state_loss`` (and ``hidden_state_terms``, its two parts): pure
  functions of time-aligned ``[batch, time, dim]`` tensors, masked with
  SpeechBrain's relative ``lengths``;
- ``align_frames``: resamples frame-level outputs to another frame rate
  (an Fbank student at 100 Hz or 50 Hz tokens vs WavLM at 50 Hz: the
  numbers of frames differ), utterance by utterance over the valid frames
  only;
- ``HiddenStateDistillation``: the ``torch.nn.Module`` term of
  ``distill_terms`` holding the projection heads; it reads the tapped
  layers (``student_taps`` / ``teacher_taps``) by alias.
"""

import torch
import torch.nn.functional as F

from speechbrain_kd.frames import frame_mask
from speechbrain_kd.objectives.epoch_sums import EpochSums
from speechbrain_kd.objectives.layers import (
    _channels_last,
    _get_tap,
    _projection,
)

ALIGN_MODES = ("interpolate", "none")


def _check_frames(student, teacher):
    if student.dim() != 3 or student.shape != teacher.shape:
        raise ValueError(
            "student and teacher hidden states must both be "
            f"[batch, time, dim] of equal shape, got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)} (align the frames and project the "
            "student first)"
        )


def hidden_state_terms(student, teacher, lengths=None, eps=1e-8):
    """The L1 and cosine terms of the DistilHuBERT loss, over valid frames.

    Each term is averaged over the valid frames of each utterance
    (``round(length * T)`` frames), then over the batch.

    Arguments
    ---------
    student, teacher : torch.Tensor
        ``[batch, time, dim]``, time-aligned, same dimension.
    lengths : torch.Tensor, optional
        ``[batch]`` relative lengths.
    eps : float
        Guards the norms of the cosine.

    Returns
    -------
    l1, cos : torch.Tensor
        Scalars: mean absolute difference per element, and mean
        ``-log sigmoid(cos)``.

    Example
    -------
    >>> import torch
    >>> s = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    >>> t = torch.tensor([[[1.0, 0.0], [0.0, -2.0]]])
    >>> l1, cos = hidden_state_terms(s, t)
    >>> l1, cos
    (tensor(1.), tensor(0.8133))
    """
    _check_frames(student, teacher)
    l1 = (student - teacher).abs().mean(-1)
    cos = F.cosine_similarity(student, teacher, dim=-1, eps=eps)
    cos = -F.logsigmoid(cos)
    mask = frame_mask(lengths, l1.shape[1]).to(l1.device).expand_as(l1)
    count = mask.sum(1).to(l1.dtype)
    zero = torch.zeros((), dtype=l1.dtype, device=l1.device)
    return (
        (torch.where(mask, l1, zero).sum(1) / count).mean(),
        (torch.where(mask, cos, zero).sum(1) / count).mean(),
    )


def hidden_state_loss(student, teacher, lengths=None, cos_weight=1.0):
    """DistilHuBERT hidden-state loss: masked L1 + ``cos_weight`` times the
    masked ``-log sigmoid(cos)``, both from ``hidden_state_terms``.
    """
    l1, cos = hidden_state_terms(student, teacher, lengths)
    return l1 + cos_weight * cos


def align_frames(frames, num_frames, lengths=None):
    """Resamples frame-level outputs to ``num_frames`` frames, per utterance.

    Utterance ``b`` has ``n = round(length_b * T)`` valid frames of the
    input and ``m = round(length_b * num_frames)`` of the output; its ``n``
    valid frames are linearly interpolated onto ``m`` frames (as
    ``F.interpolate(mode="linear", align_corners=False)`` on that
    utterance alone) and the ``num_frames - m`` padded frames are zero.
    Padded input frames are never read.

    Arguments
    ---------
    frames : torch.Tensor
        ``[batch, T, dim]``.
    num_frames : int
        Frames of the output (the teacher's).
    lengths : torch.Tensor, optional
        ``[batch]`` relative lengths (the same for input and output).

    Returns
    -------
    torch.Tensor
        ``[batch, num_frames, dim]``.

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([[[0.0], [2.0], [4.0], [6.0], [99.0], [99.0]]])
    >>> align_frames(x, 3, torch.tensor([4 / 6]))[..., 0]
    tensor([[1., 5., 0.]])
    """
    if frames.dim() != 3:
        raise ValueError(
            f"frames must be [batch, time, dim], got {tuple(frames.shape)}"
        )
    batch, in_frames, _ = frames.shape
    if in_frames == num_frames:
        return frames
    device = frames.device
    n_in = frame_mask(lengths, in_frames).to(device).sum(1).expand(batch)
    n_out = frame_mask(lengths, num_frames).to(device).sum(1).expand(batch)
    n_in, n_out = n_in.to(frames.dtype), n_out.to(frames.dtype)
    steps = torch.arange(num_frames, device=device, dtype=frames.dtype)
    # Source position of each output frame (align_corners=False)
    pos = (steps.unsqueeze(0) + 0.5) * (n_in / n_out).unsqueeze(1) - 0.5
    pos = torch.minimum(pos.clamp(min=0), (n_in - 1).unsqueeze(1))
    low = pos.floor().long()
    high = torch.minimum(low + 1, (n_in - 1).long().unsqueeze(1))
    frac = (pos - low.to(frames.dtype)).unsqueeze(-1)

    def gather(index):
        index = index.unsqueeze(-1).expand(-1, -1, frames.shape[-1])
        return torch.gather(frames, 1, index)

    out = gather(low) * (1 - frac) + gather(high) * frac
    valid = steps.unsqueeze(0) < n_out.unsqueeze(1)
    return out * valid.unsqueeze(-1).to(frames.dtype)


def _parse_pairs(pairs):
    """``[(student alias, teacher alias), ...]`` from the YAML's pairs."""
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise ValueError(
            "HiddenStateDistillation: pairs must be a non-empty list of "
            f"{{student: alias, teacher: alias}}, got {pairs!r}"
        )
    parsed = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, dict) and set(pair) == {"student", "teacher"}:
            pair = (pair["student"], pair["teacher"])
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(a, str) and a for a in pair)
        ):
            raise ValueError(
                f"HiddenStateDistillation: pairs[{i}] must be "
                "{student: <student_taps alias>, teacher: <teacher_taps "
                f"alias>}}, got {pair!r}"
            )
        parsed.append(tuple(pair))
    return parsed


class HiddenStateDistillation(EpochSums, torch.nn.Module):
    """Layer-to-layer hidden-state distillation with projection heads.

    For each pair (a tapped student layer, a tapped teacher layer), the
    student's frames go through their own linear head (``student_dim ->
    teacher_dim``), are resampled to the teacher's frame count when the
    frame rates differ (``align_frames``), and are compared with the
    (detached) teacher frames by ``hidden_state_loss``. The loss is the
    mean over pairs.

    Arguments
    ---------
    pairs : list
        ``[{student: alias, teacher: alias}, ...]``: aliases of
        ``student_taps`` / ``teacher_taps``.
    student_dim, teacher_dim : int
        Channels of the student and teacher layers.
    cos_weight : float
        Weight of the cosine term (DistilHuBERT: 1).
    align : str
        ``interpolate`` (resample the student's frames to the teacher's
        count) or ``none`` (equal counts required).
    student_channels_first, teacher_channels_first : bool
        True for ``[batch, channels, time]`` layer outputs.
    project : str
        ``always`` (default, a head per pair as in DistilHuBERT), ``auto``
        (only when the dimensions differ) or ``never``.

    Example
    -------
    >>> import torch
    >>> loss = HiddenStateDistillation(
    ...     pairs=[{"student": "b1", "teacher": "l4"},
    ...            {"student": "b3", "teacher": "l8"}],
    ...     student_dim=16, teacher_dim=32)
    >>> value = loss(
    ...     lengths=torch.tensor([1.0, 0.6]),
    ...     student_b1=torch.randn(2, 100, 16),
    ...     student_b3=torch.randn(2, 100, 16),
    ...     teacher_l4=torch.randn(2, 49, 32),
    ...     teacher_l8=torch.randn(2, 49, 32),
    ... )
    >>> value.shape
    torch.Size([])
    """

    def __init__(
        self,
        pairs,
        student_dim,
        teacher_dim,
        cos_weight=1.0,
        align="interpolate",
        student_channels_first=False,
        teacher_channels_first=False,
        project="always",
    ):
        super().__init__()
        self.pairs = _parse_pairs(pairs)
        if align not in ALIGN_MODES:
            raise ValueError(
                f"HiddenStateDistillation: align must be one of "
                f"{list(ALIGN_MODES)}, got {align!r}"
            )
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.cos_weight = float(cos_weight)
        self.align = align
        self.student_channels_first = student_channels_first
        self.teacher_channels_first = teacher_channels_first
        self.heads = torch.nn.ModuleList(
            _projection(student_dim, teacher_dim, project) for _ in self.pairs
        )
        # Names of the pairs in the train log: the teacher alias, or both
        # aliases when a teacher layer is the target of several pairs
        teachers = [t for _, t in self.pairs]
        self.names = [
            t if teachers.count(t) == 1 else f"{s}_{t}" for s, t in self.pairs
        ]
        self._reset_sums()

    def _reset_sums(self):
        self._sums = {"n": 0}
        for name in self.names:
            self._sums[f"{name}_l1"] = 0.0
            self._sums[f"{name}_cos"] = 0.0

    def _layer(self, taps, side, alias, dim, channels_first):
        x = _channels_last(_get_tap(taps, side, alias), channels_first)
        if x.shape[-1] != dim:
            raise ValueError(
                f"HiddenStateDistillation: the {side} layer {alias!r} has "
                f"{x.shape[-1]} channels, {side}_dim is {dim} (or is its "
                f"layout {side}_channels_first={not channels_first}?)"
            )
        return x

    def forward(self, lengths=None, **taps):
        """Mean over pairs of the hidden-state loss (scalar)."""
        total = 0.0
        record = self.training and torch.is_grad_enabled()
        for (s_alias, t_alias), head, name in zip(
            self.pairs, self.heads, self.names
        ):
            student = self._layer(
                taps,
                "student",
                s_alias,
                self.student_dim,
                self.student_channels_first,
            )
            teacher = self._layer(
                taps,
                "teacher",
                t_alias,
                self.teacher_dim,
                self.teacher_channels_first,
            )
            if student.shape[0] != teacher.shape[0]:
                raise ValueError(
                    f"HiddenStateDistillation: student layer {s_alias!r} has "
                    f"batch {student.shape[0]}, teacher layer {t_alias!r} "
                    f"{teacher.shape[0]}"
                )
            pred = head(student.float())
            if pred.shape[1] != teacher.shape[1]:
                if self.align == "none":
                    raise ValueError(
                        f"HiddenStateDistillation: student layer {s_alias!r} "
                        f"has {pred.shape[1]} frames, teacher layer "
                        f"{t_alias!r} {teacher.shape[1]}; use align: "
                        "interpolate for different frame rates"
                    )
                pred = align_frames(pred, teacher.shape[1], lengths)
            l1, cos = hidden_state_terms(
                pred, teacher.detach().float(), lengths
            )
            total = total + l1 + self.cos_weight * cos
            if record:  # detached float64 sums: no host sync per step
                for key, term in ((f"{name}_l1", l1), (f"{name}_cos", cos)):
                    self._sums[key] = self._sums[key] + term.detach().double()
        if record:
            self._sums["n"] += 1
        return total / len(self.pairs)

    def epoch_stats(self):
        """Mean L1 and cosine terms of each teacher layer since the last
        call (training batches), for the train log."""
        sums = self._sums
        self._reset_sums()
        if not sums["n"]:
            return {}
        return {k: float(v) / sums["n"] for k, v in sums.items() if k != "n"}
