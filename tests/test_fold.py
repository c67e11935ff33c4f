"""fold_ecapa: the folded ECAPA-TDNN gives the same embeddings."""

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_kd.onnx.fold import (
    FoldedECAPA,
    FoldedSERes2Net,
    batchnorm_affine,
    fold_ecapa,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_like(seed=0, positive=True, **kwargs):
    """A random ECAPA-TDNN whose BatchNorms have non-trivial statistics
    and affine parameters (as after training: positive scales, unless
    ``positive`` is False), in eval mode."""
    torch.manual_seed(seed)
    model = ECAPA_TDNN(
        24, channels=[32, 32, 32, 32, 96], lin_neurons=12, **kwargs
    )
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            if positive:
                m.weight.data.abs_()
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("positive", [True, False])
def test_folded_embeddings_equal(seed, positive):
    model = trained_like(seed, positive)
    folded = fold_ecapa(model)
    assert isinstance(folded, FoldedECAPA)
    g = torch.Generator().manual_seed(seed)
    x = 3 * torch.randn(3, 87, 24, generator=g)
    lens = torch.tensor([1.0, 0.55, 0.8])
    with torch.no_grad():
        for args in ((x, lens), (x,), (x[:1, :13], None)):
            ref, got = model(*args), folded(*args)
            assert got.shape == ref.shape
            scale = max(1.0, ref.abs().max().item())
            assert (got - ref).abs().max() / scale < 1e-5


def count(m):
    return sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules())


def test_folds_remove_batchnorms():
    """mfa's and asp_bn's BatchNorms are gone, and in each of the three
    SE-Res2Net blocks tdnn1's and the 7 Res2Net blocks' (scale 8); the
    model is not changed."""
    model = trained_like()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_ecapa(model)
    assert count(folded) == count(model) - 2 - 3 * 8
    assert sum(isinstance(b, FoldedSERes2Net) for b in folded.blocks) == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_negative_scale_keeps_its_block():
    """A BatchNorm with a negative scale in block 2: that block stays as it
    is, the others fold, and the embeddings are still equal."""
    model = trained_like(2)
    with torch.no_grad():
        model.blocks[2].res2net_block.blocks[3].norm.norm.weight[0] = -0.5
    folded = fold_ecapa(model)
    kinds = [type(b).__name__ for b in folded.blocks]
    assert kinds == [
        "TDNNBlock",
        "FoldedSERes2Net",
        "SERes2NetBlock",
        "FoldedSERes2Net",
    ]
    x = torch.randn(2, 40, 24, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        ref, got = model(x, lens), folded(x, lens)
    assert (got - ref).abs().max() / max(1.0, ref.abs().max()) < 1e-5


def test_fold_errors_and_passthrough():
    model = trained_like().train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_ecapa(model)
    other = torch.nn.Linear(2, 2)
    assert fold_ecapa(other) is other
    with pytest.raises(ValueError, match="global context"):
        fold_ecapa(trained_like(global_context=False))
    with pytest.raises(TypeError, match="BatchNorm1d"):
        batchnorm_affine(torch.nn.Linear(2, 2))
