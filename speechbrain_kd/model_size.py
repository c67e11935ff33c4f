"""Size and cost of a model: parameters and multiply-accumulates (torch only).

Used by the model card (``speechbrain_kd.export``), the width pruning of
the learned-width recipe and the benchmarks.
"""

import logging

import torch

logger = logging.getLogger(__name__)


def unwrap_module(module):
    """The module inside a DDP / DataParallel wrapper, if any."""
    wrappers = (
        torch.nn.parallel.DistributedDataParallel,
        torch.nn.DataParallel,
    )
    return module.module if isinstance(module, wrappers) else module


def count_parameters(module):
    """Number of parameters of a module."""
    return sum(p.numel() for p in unwrap_module(module).parameters())


def embedding_macs(modules, seconds=3.0, sample_rate=16000):
    """Multiply-accumulates of one embedding of ``seconds`` of audio.

    The feature extractor's and the embedding model's MACs, counted by
    ``count_macs`` (attention
    included); ``None`` when they cannot run on CPU here (e.g. a model that
    needs a GPU kernel).

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> mods = {"compute_features": Fbank(n_mels=24),
    ...         "embedding_model": ECAPA_TDNN(24, channels=[8] * 4 + [24],
    ...                                       lin_neurons=8)}
    >>> embedding_macs(mods) > 0
    True
    """
    feats_fn = (
        modules["compute_features"] if "compute_features" in modules else None
    )
    model = unwrap_module(modules["embedding_model"])
    try:
        device = next(model.parameters()).device
        x = torch.zeros(1, int(seconds * sample_rate), device=device)
        macs = 0
        if feats_fn is not None:
            macs += count_macs(feats_fn, x)
            with torch.no_grad():
                x = feats_fn(x)
        return macs + count_macs(model, x, torch.ones(1, device=device))
    except Exception as err:  # noqa: BLE001 - the card is informative
        logger.warning("MACs not counted: %s", err)
        return None


def count_macs(model, *inputs):
    """Multiply-accumulates of one eval-mode forward pass ``model(*inputs)``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs
    / 2: matrix products and convolutions; element-wise operations, norms
    and softmax are not counted). PyTorch's fused attention kernels are
    invisible to the counter (the inference fast path of
    ``TransformerEncoderLayer``, the CPU flash kernel of
    ``scaled_dot_product_attention``), so they are turned off while
    counting: attention is counted as its two matrix products.

    Example
    -------
    >>> import torch
    >>> layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> # Linear layers: 10 frames x (4 * 8 * 8 + 2 * 8 * 16); attention:
    >>> # 2 x 10 x 10 x 8
    >>> count_macs(layer, torch.randn(1, 10, 8))
    6720
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    fast_path = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as counter:
                model(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        model.train(was_training)
    return counter.get_total_flops() // 2
