"""Schedules in training progress: hand values, the deprecated epoch
form, and a resume in the middle of an epoch."""

import math
import warnings

import pytest

from speechbrain_kd.schedules import (
    PAPER_END_AT,
    PAPER_START_AT,
    LinearWarmup,
    Progress,
    TauCurriculum,
)


def test_paper_proportions_by_hand():
    """tau = 1 for the first 10/150 of the steps, 0.05 from 60/150: at 150
    steps, steps 10 and 60; at 1,500 steps, 100 and 600 (the same
    shape)."""
    assert (PAPER_START_AT, PAPER_END_AT) == (10 / 150, 60 / 150)
    g = 0.001
    for total in (150, 1500):
        tau = TauCurriculum(1.0, 0.05)
        k = total // 150
        assert tau.at_step(0, total) == 1.0
        assert tau.at_step(10 * k, total) == pytest.approx(1.0)
        assert tau.at_step(60 * k, total) == pytest.approx(0.05)
        assert tau.at_step(total - 1, total) == 0.05
        for s in (15, 35, 50):  # r = (s - 10) / 50
            r = (s - 10) / 50
            want = 0.05 + 0.95 * (g**r - g) / (1 - g)
            assert tau.at_step(s * k, total) == pytest.approx(want)
    # by hand: r = 0.5 gives 0.05 + 0.95 * (0.0316228 - 0.001) / 0.999
    assert TauCurriculum().at_step(35, 150) == pytest.approx(0.079121, abs=1e-6)
    tau = TauCurriculum()
    values = [tau.at_step(s, 150) for s in range(150)]
    assert values == sorted(values, reverse=True)


def test_steps_form():
    tau = TauCurriculum(1.0, 0.2, shape="linear", start_step=100, end_step=300)
    assert [tau.at_step(s, 10**6) for s in (0, 100, 200, 300, 999)] == [
        1.0,
        1.0,
        pytest.approx(0.6),
        pytest.approx(0.2),
        0.2,
    ]


@pytest.mark.parametrize(
    "shape,mid",
    [("linear", 0.525), ("cosine", 0.525), ("step", 1.0)],
)
def test_other_shapes(shape, mid):
    tau = TauCurriculum(1.0, 0.05, 0.1, 0.2, shape)
    assert tau.at_step(10, 100) == pytest.approx(1.0)
    assert tau.at_step(15, 100) == pytest.approx(mid)
    assert tau.at_step(20, 100) == pytest.approx(0.05)
    if shape == "cosine":
        assert tau.at_step(12, 100) == pytest.approx(
            0.05 + 0.95 * (1 + math.cos(0.2 * math.pi)) / 2
        )


def test_epoch_form_is_deprecated_and_keeps_its_values():
    with pytest.warns(DeprecationWarning, match="start_epoch / end_epoch"):
        tau = TauCurriculum(1.0, 0.05, start_epoch=10, end_epoch=60)
    assert [tau(e) for e in (5, 10, 60, 70)] == [1.0, 1.0, 0.05, 0.05]
    assert round(tau(35), 4) == 0.0791
    # per epoch: every step of an epoch has the epoch's value
    assert tau.at_step(0, 10, epoch=35) == tau.at_step(9, 10, epoch=35)
    with pytest.warns(DeprecationWarning, match="LinearWarmup: epochs"):
        warm = LinearWarmup(epochs=4)
    assert [warm(e) for e in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(start=1.0, end=0.0),
        dict(start=0.5, end=0.8),
        dict(start=1.5, end=0.1),
        dict(start_at=0.5, end_at=0.5),
        dict(start_at=0.5, end_at=1.5),
        dict(start_step=5, end_step=5),
        dict(start_step=5),
        dict(shape="quadratic"),
        dict(gamma=1.0),
    ],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError, match="TauCurriculum"):
        TauCurriculum(**kwargs)


def test_fraction_form_needs_the_total():
    with pytest.raises(ValueError, match="total number of steps"):
        Progress("tau_schedule").fraction(3, None)


def test_resume_in_the_middle_of_an_epoch():
    """No state to checkpoint: a fresh schedule asked at the step a run
    resumes at (epoch 3, batch 5 of 8) gives what the uninterrupted
    schedule gave at that step."""
    total = 4 * 8
    tau, warm = TauCurriculum(), LinearWarmup(until=0.3)
    run = [
        (tau.at_step(s, total), warm.at_step(s, total)) for s in range(total)
    ]
    step = (3 - 1) * 8 + 5
    fresh = TauCurriculum(), LinearWarmup(until=0.3)
    got = fresh[0].at_step(step, total), fresh[1].at_step(step, total)
    assert got == run[step]
    assert not hasattr(TauCurriculum, "_save")


def test_warmup():
    warm = LinearWarmup(until=0.25)
    assert [warm.at_step(s, 20) for s in (0, 1, 5, 6)] == [0.0, 0.2, 1.0, 1.0]
    assert LinearWarmup(steps=4).at_step(2, 100) == 0.5
    assert LinearWarmup().at_step(0, 10) == 1.0 == LinearWarmup().current
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearWarmup(until=0.1)  # no warning for the progress form
    with pytest.raises(ValueError, match="until"):
        LinearWarmup(until=4)
    with pytest.raises(ValueError, match="steps"):
        LinearWarmup(steps=-1)
