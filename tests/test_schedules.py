"""tau curriculum and warm-up values, and their checkpoint round trip."""

import math

import pytest
import torch

from speechbrain_kd.schedules import LinearWarmup, TauCurriculum


def test_exponential_paper_settings():
    tau = TauCurriculum(1.0, 0.05, 10, 60, "exponential", 0.001)
    assert tau(1) == 1.0 and tau(10) == pytest.approx(1.0)
    assert tau(60) == pytest.approx(0.05) and tau(100) == 0.05
    g = 0.001
    for epoch in (15, 35, 50):
        r = (epoch - 10) / 50
        expected = 0.05 + 0.95 * (g**r - g) / (1 - g)
        assert tau(epoch) == pytest.approx(expected)
    values = [tau(e) for e in range(10, 61)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize(
    "shape,mid",
    [("linear", 0.525), ("cosine", 0.525), ("step", 1.0)],
)
def test_other_shapes(shape, mid):
    tau = TauCurriculum(1.0, 0.05, 10, 20, shape)
    assert tau(10) == pytest.approx(1.0)
    assert tau(15) == pytest.approx(mid)
    assert tau(20) == pytest.approx(0.05)
    if shape == "cosine":
        assert tau(12) == pytest.approx(
            0.05 + 0.95 * (1 + math.cos(0.2 * math.pi)) / 2
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(start=1.0, end=0.0),
        dict(start=0.5, end=0.8),
        dict(start=1.5, end=0.1),
        dict(start_epoch=5, end_epoch=5),
        dict(shape="quadratic"),
        dict(gamma=1.0),
    ],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError, match="TauCurriculum"):
        TauCurriculum(**kwargs)


def test_values_depend_on_the_epoch_only():
    """No state to checkpoint: a fresh schedule called at the epoch a run
    resumes at gives what the uninterrupted schedule gave."""
    tau, warm = TauCurriculum(start_epoch=1, end_epoch=5), LinearWarmup(4)
    run = [(tau(e), warm(e)) for e in range(1, 8)]
    for e in (7, 3, 1, 5):
        fresh = TauCurriculum(start_epoch=1, end_epoch=5), LinearWarmup(4)
        assert (fresh[0](e), fresh[1](e)) == run[e - 1]
    assert not hasattr(TauCurriculum, "_save")


def test_warmup():
    warm = LinearWarmup(5)
    assert [warm(e) for e in (1, 5, 6)] == [0.2, 1.0, 1.0]
    assert LinearWarmup(0)(1) == 1.0
    with pytest.raises(ValueError):
        LinearWarmup(-1)
    assert torch.tensor(warm.current) == 1.0
