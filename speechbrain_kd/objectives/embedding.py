"""Embedding distillation: cosine distances to multi-level teacher targets.

Multi-level x-vector knowledge distillation (Liu, Sahidullah and Kinnunen,
"Distilling Multi-Level X-vector Knowledge for Small-footprint Speaker
Verification", arXiv 2303.01125): a compact student is trained to
reproduce embeddings taken at several levels of a frozen x-vector teacher,

- the utterance-level x-vector (segment6),
- frame-level outputs of its TDNN layers (e.g. the narrow 512-channel frame4
  and the wide 1500-channel frame5 layers), frame by frame,
- aggregations of the frame-level outputs of several layers (statistics
  pooling, or a learnable dictionary encoding, see
  ``speechbrain_kd.lobes.aggregation``),
- or the concatenation of several of these.

``cosine_distance`` is the distance, a pure function of tensors;
``EmbeddingDistillation`` is the ``torch.nn.Module`` term for ``KDBrain``'s
``distill_terms`` that holds what has to train with the student (a
projection head where the dimensions differ, learnable aggregators) and
reads the tapped layers (``teacher_taps`` / ``student_taps`` of the YAML)
by alias. The frame-by-frame term, ``FrameDistillation``, and its
``frame_cosine_distance`` are in ``speechbrain_kd.objectives.frame``, also
importable from here (YAMLs may name
``speechbrain_kd.objectives.embedding.FrameDistillation``).
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_kd.objectives.epoch_sums import EpochSums
from speechbrain_kd.objectives.frame import (
    FrameDistillation,
    frame_cosine_distance,
)
from speechbrain_kd.objectives.layers import _get_tap, _projection

__all__ = [
    "EmbeddingDistillation",
    "FrameDistillation",
    "concat_normalized",
    "cosine_distance",
    "frame_cosine_distance",
]


def _flatten(name, x):
    """``[batch, dim]`` from ``[batch, dim]`` or ``[batch, 1, dim]``."""
    if x.dim() == 3 and x.shape[1] == 1:
        x = x.squeeze(1)
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be [batch, dim] or [batch, 1, dim], got shape "
            f"{tuple(x.shape)}"
        )
    return x


def cosine_distance(student, teacher, eps=1e-8):
    """Mean cosine distance ``1 - cos(s, t)`` between embeddings.

    Arguments
    ---------
    student, teacher : torch.Tensor
        ``[batch, dim]`` (or ``[batch, 1, dim]``) embeddings of the same
        dimension (project the student first when they differ).
    eps : float
        Guards the norms.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 2], averaged over the batch.

    Example
    -------
    >>> import torch
    >>> s = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> t = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> cosine_distance(s, t)
    tensor(0.5000)
    """
    student = _flatten("student", student)
    teacher = _flatten("teacher", teacher)
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)} embeddings differ in shape; project the "
            "student to the teacher's dimension"
        )
    cos = F.cosine_similarity(student, teacher, dim=-1, eps=eps)
    return (1.0 - cos).mean()


def concat_normalized(parts):
    """Concatenation of L2-normalised embeddings, with unit norm overall.

    Each ``[batch, dim_i]`` part is normalised and scaled by
    ``1 / sqrt(len(parts))``, so it weighs the same in the cosine to the
    ``[batch, sum(dim_i)]`` result whatever its dimension or scale. Raises
    ``ValueError`` for an empty ``parts``.
    """
    if not parts:
        raise ValueError("concat_normalized needs at least one embedding")
    scale = 1.0 / math.sqrt(len(parts))
    return torch.cat([F.normalize(p, dim=-1) * scale for p in parts], dim=-1)


class EmbeddingDistillation(EpochSums, torch.nn.Module):
    """Cosine distance between the student embedding and a teacher target.

    The target is one teacher embedding or the concatenation of several
    (``parts``, each L2-normalised, see ``concat_normalized``). A part is
    the output of one or more tapped teacher layers:

    - utterance-level vectors (``[batch, dim]`` / ``[batch, 1, dim]``, e.g.
      the x-vector of segment6), concatenated: give their total ``dim``;
    - frame-level outputs (``[batch, time, dim]``) of one or more layers,
      aggregated into one vector by ``pooling``: a module taking
      ``(list of frame tensors, lengths)`` with an ``output_size``
      attribute (``speechbrain_kd.lobes.aggregation.StatisticsAggregator``
      or the learnable ``LDEAggregator``).

    The layer alias ``embedding`` is the teacher's own embedding (no tap
    needed). The student embedding goes through a linear projection head
    when its dimension differs from the target's. The target is detached:
    a learnable aggregator is trained by its own ``auxiliary_loss`` (a
    speaker classifier), added to the returned value, so that it cannot
    collapse onto what the student already outputs.

    Arguments
    ---------
    student_dim : int
        Dimension of the student embedding.
    parts : list of dict
        ``{"layers": [alias, ...], "dim": int}`` or
        ``{"layers": [alias, ...], "pooling": module}``.
    project : str
        ``auto`` (a head only when dimensions differ), ``always`` or
        ``never``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_kd.lobes.aggregation import StatisticsAggregator
    >>> loss = EmbeddingDistillation(
    ...     student_dim=16,
    ...     parts=[
    ...         {"layers": ["segment6"], "dim": 32},
    ...         {"layers": ["wideBN"], "pooling": StatisticsAggregator([48])},
    ...     ],
    ... )
    >>> loss.target_dim
    128
    >>> value = loss(
    ...     student_embedding=torch.randn(4, 16),
    ...     lengths=torch.ones(4),
    ...     targets=torch.tensor([0, 1, 2, 3]),
    ...     teacher_segment6=torch.randn(4, 1, 32),
    ...     teacher_wideBN=torch.randn(4, 50, 48),
    ... )
    >>> value.shape, bool(0 <= value <= 2)
    (torch.Size([]), True)
    """

    def __init__(self, student_dim, parts, project="auto"):
        super().__init__()
        if not isinstance(parts, (list, tuple)) or not parts:
            raise ValueError(
                "EmbeddingDistillation: parts must be a non-empty list of "
                f"{{layers: [...], dim: N}} / {{layers: [...], pooling: "
                f"module}}, got {parts!r}"
            )
        self.layers, self.dims = [], []
        self.poolings = torch.nn.ModuleList()
        self.pooled = []
        for i, part in enumerate(parts):
            where = f"EmbeddingDistillation: parts[{i}]"
            if not isinstance(part, dict) or set(part) - {
                "layers",
                "dim",
                "pooling",
            }:
                raise ValueError(
                    f"{where} must be a mapping with 'layers' and 'dim' or "
                    f"'pooling', got {part!r}"
                )
            layers = part.get("layers")
            if isinstance(layers, str):
                layers = [layers]
            if not layers or not all(isinstance(n, str) for n in layers):
                raise ValueError(
                    f"{where}[layers] must be a list of tap aliases, got "
                    f"{layers!r}"
                )
            if ("dim" in part) == ("pooling" in part):
                raise ValueError(
                    f"{where} needs exactly one of 'dim' (utterance-level "
                    "vectors) and 'pooling' (frame-level outputs)"
                )
            if "pooling" in part:
                pooling = part["pooling"]
                if not isinstance(pooling, torch.nn.Module) or not hasattr(
                    pooling, "output_size"
                ):
                    raise TypeError(
                        f"{where}[pooling] must be an aggregator module with "
                        f"an output_size (use !new:), got {pooling!r}"
                    )
                self.poolings.append(pooling)
                dim = int(pooling.output_size)
            else:
                self.poolings.append(torch.nn.Identity())
                dim = part["dim"]
                if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                    raise ValueError(
                        f"{where}[dim] must be a positive int, got {dim!r}"
                    )
            self.layers.append(list(layers))
            self.dims.append(dim)
            self.pooled.append("pooling" in part)
        self.target_dim = sum(self.dims)
        self.projection = _projection(student_dim, self.target_dim, project)
        self.student_dim = student_dim
        self._sums = {"cos": 0.0, "aux": 0.0, "n": 0}

    def teacher_target(
        self, lengths, targets=None, teacher_embedding=None, **taps
    ):
        """The (undetached) target and the aggregators' auxiliary loss."""
        taps = dict(taps, teacher_embedding=teacher_embedding)
        vectors, aux = [], None
        for i, (layers, dim, pooling, pooled) in enumerate(
            zip(self.layers, self.dims, self.poolings, self.pooled)
        ):
            outputs = [_get_tap(taps, "teacher", name) for name in layers]
            if pooled:
                vec = pooling(outputs, lengths)
                if hasattr(pooling, "auxiliary_loss"):
                    loss = pooling.auxiliary_loss(vec, targets)
                    if loss is not None:
                        aux = loss if aux is None else aux + loss
            else:
                vec = torch.cat(
                    [
                        _flatten(f"teacher_{name}", out)
                        for name, out in zip(layers, outputs)
                    ],
                    dim=-1,
                )
            if vec.shape[-1] != dim:
                raise ValueError(
                    f"EmbeddingDistillation: parts[{i}] (layers {layers}) "
                    f"is {vec.shape[-1]}-dimensional, the YAML says {dim}: "
                    "check the teacher's dimensions in the YAML"
                )
            vectors.append(vec)
        target = vectors[0] if len(vectors) == 1 else concat_normalized(vectors)
        return target, aux

    def forward(
        self,
        student_embedding,
        lengths=None,
        targets=None,
        teacher_embedding=None,
        **taps,
    ):
        """Cosine distance to the (detached) target, plus auxiliary losses.

        Arguments
        ---------
        student_embedding : torch.Tensor
            ``[batch, student_dim]``.
        lengths : torch.Tensor
            ``[batch]`` relative lengths (for frame-level parts).
        targets : torch.Tensor
            ``[batch]`` class indices (for aggregators with a classifier).
        teacher_embedding : torch.Tensor
            ``[batch, dim]``, the part alias ``embedding``.
        **taps
            ``teacher_<alias>`` outputs of the tapped layers.

        Returns
        -------
        torch.Tensor
            Scalar loss.
        """
        student = _flatten("student_embedding", student_embedding)
        if student.shape[-1] != self.student_dim:
            raise ValueError(
                f"EmbeddingDistillation: student embedding is "
                f"{student.shape[-1]}-dimensional, student_dim is "
                f"{self.student_dim}"
            )
        target, aux = self.teacher_target(
            lengths, targets, teacher_embedding, **taps
        )
        loss = cosine_distance(
            self.projection(student).float(), target.detach().float()
        )
        if aux is None:
            return loss
        if self.training:
            # Detached float64 tensors, read on the host only by
            # epoch_stats (a float() here would sync every step); float64
            # adds as the Python floats did.
            self._sums["cos"] = self._sums["cos"] + loss.detach().double()
            self._sums["aux"] = self._sums["aux"] + aux.detach().double()
            self._sums["n"] += 1
        return loss + aux

    def epoch_stats(self):
        """Means of the cosine distance and of the auxiliary loss (the
        aggregators' classifiers) since the last call, for the train log;
        empty without auxiliary loss."""
        sums, self._sums = self._sums, {"cos": 0.0, "aux": 0.0, "n": 0}
        if not sums["n"]:
            return {}
        return {k: float(sums[k]) / sums["n"] for k in ("cos", "aux")}
