"""fold_ecapa: the folded ECAPA-TDNN gives the same embeddings."""

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_kd.onnx.fold import FoldedECAPA, batchnorm_affine, fold_ecapa

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_like(seed=0, **kwargs):
    """A random ECAPA-TDNN whose BatchNorms have non-trivial statistics
    and affine parameters (as after training), in eval mode."""
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
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_folded_embeddings_equal(seed):
    model = trained_like(seed)
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


def test_folds_remove_batchnorms():
    """mfa's and asp_bn's BatchNorms are gone; the model is not changed."""
    model = trained_like()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_ecapa(model)

    def count(m):
        return sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules())

    assert count(folded) == count(model) - 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


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
