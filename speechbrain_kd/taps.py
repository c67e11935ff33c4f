"""Forward hooks that record the outputs of named sub-layers ("taps").

Multi-level and hidden-state distillation need intermediate outputs of the
teacher and of the student (frame-level TDNN outputs, block outputs...).
``LayerTaps`` records them with forward hooks, without copying or changing
the model: the model's own outputs are untouched.
"""


class LayerTaps:
    """Records the outputs of named sub-modules of ``model`` at each forward.

    Arguments
    ---------
    model : torch.nn.Module
        The model to tap.
    layers : dict
        ``{alias: submodule path}``, e.g. ``{"frame": "blocks.2"}``; the
        path is what ``model.get_submodule`` takes.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> taps = LayerTaps(net, {"hidden": "0"})
    >>> y = net(torch.randn(2, 3))
    >>> taps.outputs["hidden"].shape
    torch.Size([2, 4])
    >>> taps.remove()
    """

    def __init__(self, model, layers):
        self.outputs = {}
        self.handles = []
        for alias, path in (layers or {}).items():
            try:
                module = model.get_submodule(path)
            except AttributeError as e:
                names = [n for n, _ in model.named_modules() if n][:40]
                raise ValueError(
                    f"Cannot tap {alias!r}: {type(model).__name__} has no "
                    f"sub-module {path!r} (some it has: {names})"
                ) from e
            self.handles.append(module.register_forward_hook(self._hook(alias)))

    def _hook(self, alias):
        def hook(module, inputs, output):
            del module, inputs
            if isinstance(output, (tuple, list)):
                output = output[0]
            self.outputs[alias] = output

        return hook

    def pop(self):
        """The recorded outputs since the last call (and forgets them)."""
        outputs, self.outputs = self.outputs, {}
        return outputs

    def remove(self):
        """Removes the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
