"""Helpers of the layer-level distillation terms.

The terms of ``speechbrain_kd.objectives.embedding``,
``speechbrain_kd.objectives.frame`` and ``speechbrain_kd.objectives.hidden``
read tapped layers by alias (``_get_tap``, the ``student_taps`` /
``teacher_taps`` of the YAML), bring frame-level outputs to
``[batch, time, dim]`` (``_channels_last``) and project the student's
features to the teacher's dimension (``_projection``).
"""

import torch


def _projection(in_dim, out_dim, project):
    """A linear head ``in_dim -> out_dim``, or identity when not needed."""
    if project not in ("auto", "always", "never"):
        raise ValueError(
            f"project must be 'auto', 'always' or 'never', got {project!r}"
        )
    if project == "always" or (project == "auto" and in_dim != out_dim):
        return torch.nn.Linear(in_dim, out_dim)
    if in_dim != out_dim:
        raise ValueError(
            f"project='never' needs equal dimensions, got student {in_dim} "
            f"and teacher {out_dim}"
        )
    return torch.nn.Identity()


def _get_tap(taps, side, alias):
    """The tapped output ``<side>_<alias>`` with a clear error if absent."""
    key = f"{side}_{alias}"
    value = taps.get(key)
    if value is None:
        have = sorted(k for k in taps if k.startswith(f"{side}_"))
        raise KeyError(
            f"needs the {side} layer {alias!r} ({key}), which is not tapped: "
            f"add {alias}: <submodule path> to {side}_taps in the YAML "
            f"(tapped now: {have})"
        )
    return value


def _channels_last(x, channels_first):
    """``[batch, time, dim]`` from a frame-level output."""
    if x.dim() != 3:
        raise ValueError(
            f"frame-level output must be 3-D, got shape {tuple(x.shape)}"
        )
    return x.transpose(1, 2) if channels_first else x
