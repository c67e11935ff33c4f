"""ECAPA-TDNN students that learn their own width.

Following Gómez and Bäckström (arXiv 2601.13704), the width of a layer is
a continuous ``K`` (the gates: ``speechbrain_kd.lobes.widths``) that a
complexity loss on the analytic FLOP count (``lobes.ecapa_macs``,
``objectives.complexity``) pushes down; after training,
``DynamicECAPA.materialise`` removes the features at or beyond ``ceil(K)``
(no importance scores, no heuristic pruning) and returns a plain
``ECAPA_TDNN``, equal to the masked model in eval mode.

``DynamicECAPA`` is SpeechBrain's ``ECAPA_TDNN`` (a subclass: same modules,
same forward) with forward hooks that gate the outputs of its layers. The
learnable widths are per *channel group*, the widths a plain ``ECAPA_TDNN``
can be given independently:

- ``channels``: the output of the first TDNN block and of every SE-Res2
  block, and the inner width of the SE-Res2 blocks. They are tied in a plain
  ECAPA-TDNN: the blocks add their input to their output (identity shortcut
  between blocks of equal width) and ``ECAPA_TDNN`` sizes the MFA input as
  ``3 * channels[-2]``. Res2Net cuts the channels into ``res2net_scale``
  chunks, so this group is gated inside each chunk alike (``K`` features
  per chunk): its pruned width is ``res2net_scale * ceil(K)``, the
  continuous width rounded *up* to a multiple of ``res2net_scale``.
- ``mfa``: the output of the multi-layer feature aggregation
  (``channels[-1]``), which attentive statistics pooling summarises.
- ``attention``: the bottleneck of the attention of the pooling
  (``attention_channels``).
- ``se``: the bottleneck of the squeeze-excitation blocks
  (``se_channels``); they run once per utterance, so their FLOPs are tiny.
"""

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_kd.lobes.ecapa_macs import ecapa_macs
from speechbrain_kd.lobes.widths import kept_count, width_gate, width_mask

__all__ = [
    "GROUPS",
    "DynamicECAPA",
    "ecapa_macs",
    "kept_count",
    "width_gate",
    "width_mask",
]

GROUPS = ("channels", "mfa", "attention", "se")


class DynamicECAPA(ECAPA_TDNN):
    """``ECAPA_TDNN`` whose channel groups have learnable widths.

    Arguments
    ---------
    input_size, device, lin_neurons, activation, channels, kernel_sizes,
    dilations, attention_channels, res2net_scale, se_channels,
    global_context, groups, dropout
        As ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN``: the full
        (largest) model. ``channels[:-1]`` must be equal and divisible by
        ``res2net_scale``; ``groups`` must be all 1.
    dynamic : sequence of str
        The channel groups with a learnable width, among ``channels``,
        ``mfa``, ``attention``, ``se`` (see the module docstring).
    k_scale : float
        Each width is stored as ``fraction / k_scale`` (``fraction`` of the
        full width, in ``(0, 1]``): with Adam, the fraction moves about
        ``k_scale`` times the learning rate per step.
    frames : int
        Frames of the reference utterance of the FLOP count (``macs``,
        ``flops_ratio``); only the utterance-level layers (squeeze-excitation,
        final linear layer) do not scale with it. 200 frames = 2 s.
    noise : bool
        Whether the boundary features get noise in training mode (the
        method); False only for ablations.

    Example
    -------
    >>> import torch
    >>> model = DynamicECAPA(20, channels=[16, 16, 16, 16, 48],
    ...                      attention_channels=8, lin_neurons=12,
    ...                      res2net_scale=4, se_channels=4)
    >>> model(torch.rand(2, 30, 20)).shape
    torch.Size([2, 1, 12])
    >>> with torch.no_grad():
    ...     model.set_fractions(channels=0.5, mfa=0.3)
    >>> model.pruned_widths()
    {'channels': 8, 'mfa': 15, 'attention': 8, 'se': 4}
    >>> plain = model.materialise()
    >>> type(plain).__name__, plain.channels
    ('ECAPA_TDNN', [8, 8, 8, 8, 15])
    >>> x = torch.rand(2, 30, 20)
    >>> model.eval()(x).allclose(plain.eval()(x), atol=1e-5)
    True
    """

    def __init__(
        self,
        input_size,
        device="cpu",
        lin_neurons=192,
        activation=torch.nn.ReLU,
        channels=(512, 512, 512, 512, 1536),
        kernel_sizes=(5, 3, 3, 3, 1),
        dilations=(1, 2, 3, 4, 1),
        attention_channels=128,
        res2net_scale=8,
        se_channels=128,
        global_context=True,
        groups=(1, 1, 1, 1, 1),
        dropout=0.0,
        dynamic=("channels", "mfa", "attention"),
        k_scale=1.0,
        frames=200,
        noise=True,
    ):
        channels, groups = list(channels), list(groups)
        if len(channels) < 3:
            raise ValueError(
                f"DynamicECAPA: channels needs at least 3 entries, got "
                f"{channels}"
            )
        if len(set(channels[:-1])) != 1:
            raise ValueError(
                "DynamicECAPA: channels[:-1] must be equal (the blocks share "
                "one width in a plain ECAPA_TDNN: identity shortcuts and the "
                f"MFA input), got {channels}"
            )
        if channels[0] % res2net_scale:
            raise ValueError(
                f"DynamicECAPA: channels[0]={channels[0]} must be divisible "
                f"by res2net_scale={res2net_scale}"
            )
        if any(g != 1 for g in groups):
            raise ValueError(
                f"DynamicECAPA: groups must all be 1, got {groups}"
            )
        unknown = [g for g in dynamic if g not in GROUPS]
        if unknown or len(set(dynamic)) != len(dynamic):
            raise ValueError(
                f"DynamicECAPA: dynamic must list distinct groups among "
                f"{GROUPS}, got {list(dynamic)}"
            )
        if not k_scale > 0 or not frames > 0:
            raise ValueError(
                f"DynamicECAPA: k_scale and frames must be > 0, got "
                f"{k_scale} and {frames}"
            )
        self.arch = dict(
            input_size=input_size,
            lin_neurons=lin_neurons,
            activation=activation,
            channels=channels,
            kernel_sizes=list(kernel_sizes),
            dilations=list(dilations),
            attention_channels=attention_channels,
            res2net_scale=res2net_scale,
            se_channels=se_channels,
            global_context=global_context,
            groups=groups,
            dropout=dropout,
        )
        super().__init__(device=device, **self.arch)
        self.dynamic = tuple(dynamic)
        self.k_scale = float(k_scale)
        self.frames = int(frames)
        self.noise = bool(noise)
        # Features per chunk and full width of each group.
        self.units = {
            "channels": channels[0] // res2net_scale,
            "mfa": channels[-1],
            "attention": attention_channels,
            "se": se_channels,
        }
        self.width = torch.nn.ParameterDict(
            {
                g: torch.nn.Parameter(torch.tensor(1.0 / self.k_scale))
                for g in self.dynamic
            }
        )
        self._register_gates()

    # Gates --------------------------------------------------------------

    def _register_gates(self):
        def gate(group):
            def hook(module, inputs, output):
                del module, inputs
                return self._gate(output, group)

            return hook

        def alive(repeats):
            def hook(module, inputs, output=None):
                del module
                x = inputs[0] if output is None else output
                mask = self.alive_mask("mfa").to(x.dtype).repeat(repeats)
                x = x * mask.view(1, -1, 1)
                return (x, *inputs[1:]) if output is None else x

            return hook

        def add(module, group):
            if group in self.dynamic:
                module.register_forward_hook(gate(group))

        add(self.blocks[0], "channels")
        for block in self.blocks[1:]:
            add(block.tdnn1, "channels")
            for sub in block.res2net_block.blocks:
                add(sub, "channels")
            add(block.tdnn2, "channels")
            add(block.se_block.conv1, "se")
        add(self.mfa, "mfa")
        add(self.asp.tdnn, "attention")
        if "mfa" in self.dynamic:
            # Pooled statistics of removed channels are constants (mean 0,
            # std sqrt(eps)), not zeros: zero them where they are used.
            repeats = 3 if self.arch["global_context"] else 1
            self.asp.tdnn.register_forward_pre_hook(alive(repeats))
            self.asp_bn.register_forward_hook(alive(2))

    def _gate(self, x, group):
        k = self.k(group)
        return width_gate(
            x, k, self.units[group], noise=self.training and self.noise
        )

    def fraction(self, group):
        """Width of ``group`` as a fraction of its full width (tensor)."""
        if group not in self.dynamic:
            return torch.ones((), device=self.fc.conv.weight.device)
        low = 1.0 / self.units[group]
        return torch.clamp(self.k_scale * self.width[group], low, 1.0)

    def k(self, group):
        """Continuous width ``K`` of ``group``, in features per chunk."""
        return self.units[group] * self.fraction(group)

    def alive_mask(self, group):
        """``[units]`` 0/1 mask of the features that are not zero.

        In eval mode, those below ``ceil(K)``; in training mode also the
        boundary feature when ``K`` is an integer (then pure noise).
        """
        k = self.k(group).detach()
        idx = torch.arange(self.units[group], device=k.device)
        if self.training and self.noise:
            return (idx <= torch.floor(k)).float()
        return (idx < kept_count(k)).float()

    @torch.no_grad()
    def project_(self):
        """Clamps the stored widths into ``[1 feature, full width]``."""
        for group, p in self.width.items():
            low = 1.0 / self.units[group]
            p.clamp_(low / self.k_scale, 1.0 / self.k_scale)

    @torch.no_grad()
    def set_fractions(self, **fractions):
        """Sets widths as fractions of the full widths (``channels=0.5``)."""
        for group, value in fractions.items():
            if group not in self.dynamic:
                raise ValueError(
                    f"{group!r} is not a dynamic group ({self.dynamic})"
                )
            self.width[group].fill_(float(value) / self.k_scale)
        self.project_()

    def forward(self, x, lengths=None):
        """As ``ECAPA_TDNN.forward``; in training, projects the widths."""
        if self.training:
            self.project_()
        return super().forward(x, lengths)

    # Complexity ---------------------------------------------------------

    def full_widths(self):
        """Full width of each group (channels in total)."""
        ch = self.arch["channels"]
        return {
            "channels": ch[0],
            "mfa": ch[-1],
            "attention": self.arch["attention_channels"],
            "se": self.arch["se_channels"],
        }

    def continuous_widths(self):
        """Width of each group, differentiable (``K`` times the chunks)."""
        full = self.full_widths()
        return {g: full[g] * self.fraction(g) for g in GROUPS}

    def pruned_widths(self):
        """Width of each group after pruning (``ceil(K)`` per chunk)."""
        scale = self.arch["res2net_scale"]
        widths = {}
        for g in GROUPS:
            chunks = scale if g == "channels" else 1
            widths[g] = chunks * kept_count(self.k(g))
        return widths

    def macs(self, widths=None):
        """MACs of one utterance of ``frames`` frames (``ecapa_macs``).

        Arguments
        ---------
        widths : dict, optional
            Width of each group; default: the full widths.
        """
        widths = widths or self.full_widths()
        arch = dict(self.arch)
        n = len(arch["channels"])
        arch["channels"] = [widths["channels"]] * (n - 1) + [widths["mfa"]]
        arch["attention_channels"] = widths["attention"]
        arch["se_channels"] = widths["se"]
        del arch["activation"], arch["dilations"], arch["dropout"]
        return ecapa_macs(frames=self.frames, **arch)

    def flops_ratio(self):
        """FLOPs at the current (continuous) widths / full FLOPs (tensor),
        differentiable in the widths: the input of the complexity loss.
        """
        return self.macs(self.continuous_widths()) / self.macs()

    # Pruning ------------------------------------------------------------

    def plain_kwargs(self):
        """Keyword arguments of the pruned plain ``ECAPA_TDNN``."""
        widths = self.pruned_widths()
        kwargs = dict(self.arch)
        n = len(kwargs["channels"])
        kwargs["channels"] = [widths["channels"]] * (n - 1) + [widths["mfa"]]
        kwargs["attention_channels"] = widths["attention"]
        kwargs["se_channels"] = widths["se"]
        return kwargs

    def plain_definition(self):
        """HyperPyYAML text (``!new:``) of the pruned plain ``ECAPA_TDNN``.

        Example
        -------
        >>> model = DynamicECAPA(20, channels=[16, 16, 16, 16, 48],
        ...                      attention_channels=8, res2net_scale=4)
        >>> print(model.plain_definition().splitlines()[0])
        !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
        """
        lines = ["!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"]
        for key, value in self.plain_kwargs().items():
            if isinstance(value, type):
                value = f"!name:{value.__module__}.{value.__qualname__}"
            elif isinstance(value, bool):
                value = "True" if value else "False"
            lines.append(f"{key}: {value}")
        return "\n".join(lines) + "\n"

    def _kept(self, group):
        """Indices kept in a group's full dimension, and their factors."""
        scale = self.arch["res2net_scale"]
        units = self.units[group]
        chunks = scale if group == "channels" else 1
        k = self.k(group).detach().cpu()
        n = kept_count(k)
        frac = float(k - torch.floor(k))
        idx = torch.cat([c * units + torch.arange(n) for c in range(chunks)])
        factor = torch.ones(n)
        if frac > 0:
            factor[-1] = frac
        return idx, factor.repeat(chunks)

    @torch.no_grad()
    def materialise(self):
        """The plain, smaller ``ECAPA_TDNN`` equal to this model in eval.

        Keeps the features below ``ceil(K)`` of every group, folds the
        factor of the boundary feature into the affine parameters of the
        layer that produces it, and removes the rest. The result has no
        masks, no hooks and the real channel counts (``channels`` rounded
        up to a multiple of ``res2net_scale``, see the module docstring).

        Returns
        -------
        ECAPA_TDNN
            In eval mode, on the device of this model.
        """
        src = {k: v.detach() for k, v in self.state_dict().items()}
        ch, ch_f = self._kept("channels")
        chunk = ch[: len(ch) // self.arch["res2net_scale"]]
        chunk_f = ch_f[: len(chunk)]
        c4, c4_f = self._kept("mfa")
        att, att_f = self._kept("attention")
        se, se_f = self._kept("se")
        full = self.full_widths()
        n_in = self.arch["input_size"]
        dst = {}

        def conv(prefix, rows, cols, factor=None):
            w = src[f"{prefix}.conv.weight"]
            w = w[rows.to(w.device)][:, cols.to(w.device)]
            b = src[f"{prefix}.conv.bias"][rows.to(w.device)]
            if factor is not None:
                factor = factor.to(w)
                w, b = w * factor.view(-1, 1, 1), b * factor
            dst[f"{prefix}.conv.weight"], dst[f"{prefix}.conv.bias"] = w, b

        def norm(prefix, rows, factor=None):
            rows = rows.to(src[f"{prefix}.norm.weight"].device)
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = src[f"{prefix}.norm.{name}"][rows]
                if factor is not None and name in ("weight", "bias"):
                    value = value * factor.to(value)
                dst[f"{prefix}.norm.{name}"] = value
            key = f"{prefix}.norm.num_batches_tracked"
            dst[key] = src[key]

        def tdnn(prefix, rows, cols, factor):
            conv(f"{prefix}.conv", rows, cols)
            norm(f"{prefix}.norm", rows, factor)

        def cat(idx, size, times):
            return torch.cat([idx + t * size for t in range(times)])

        tdnn("blocks.0", ch, torch.arange(n_in), ch_f)
        for i in range(1, len(self.blocks)):
            p = f"blocks.{i}"
            tdnn(f"{p}.tdnn1", ch, ch, ch_f)
            for j in range(len(self.blocks[i].res2net_block.blocks)):
                tdnn(f"{p}.res2net_block.blocks.{j}", chunk, chunk, chunk_f)
            tdnn(f"{p}.tdnn2", ch, ch, ch_f)
            conv(f"{p}.se_block.conv1", se, ch, se_f)
            conv(f"{p}.se_block.conv2", ch, se)
        tdnn("mfa", c4, cat(ch, full["channels"], len(self.blocks) - 1), c4_f)
        repeats = 3 if self.arch["global_context"] else 1
        tdnn("asp.tdnn", att, cat(c4, full["mfa"], repeats), att_f)
        conv("asp.conv", c4, att)
        norm("asp_bn", cat(c4, full["mfa"], 2))
        lin = torch.arange(self.arch["lin_neurons"])
        conv("fc", lin, cat(c4, full["mfa"], 2))

        plain = ECAPA_TDNN(**self.plain_kwargs())
        plain.load_state_dict(dst, strict=True)
        return plain.to(self.fc.conv.weight.device).eval()

    def width_stats(self):
        """Pruned width of each dynamic group (for logs)."""
        widths = self.pruned_widths()
        return {f"width_{g}": widths[g] for g in self.dynamic}
