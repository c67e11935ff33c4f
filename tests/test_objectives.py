"""Logit-distillation objectives against hand computations."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_kd.objectives.dkd import dkd_loss, masked_kl, mass_kl
from speechbrain_kd.objectives.kd import kd_loss
from speechbrain_kd.objectives.partition import top_class_mask, top_mass_set
from speechbrain_kd.objectives.trkd import (
    TRKDLoss,
    confusion_mask,
    triage_masses,
    trkd_loss,
)


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def softmax(x, T=1.0):
    e = [math.exp(v / T) for v in x]
    return [v / sum(e) for v in e]


S = [2.0, 0.5, -1.0, 0.0]
T_ = [1.0, 3.0, 0.0, -2.0]


def test_kd_hand_value():
    T = 2.0
    expected = T**2 * kl(softmax(T_, T), softmax(S, T))
    got = kd_loss(torch.tensor([S]), torch.tensor([T_]), T=T)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_batch_mean():
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    per_row = [kd_loss(s[i : i + 1], t[i : i + 1]) for i in range(5)]
    assert kd_loss(s, t).item() == pytest.approx(
        torch.stack(per_row).mean().item(), rel=1e-5
    )


def test_dkd_hand_value():
    T, target, alpha, beta = 3.0, 0, 1.5, 4.0
    ps, pt = softmax(S, T), softmax(T_, T)
    tckd = kl([pt[0], 1 - pt[0]], [ps[0], 1 - ps[0]])
    qs = softmax(S[1:], T)
    qt = softmax(T_[1:], T)
    expected = T**2 * (alpha * tckd + beta * kl(qt, qs))
    got = dkd_loss(
        torch.tensor([S]),
        torch.tensor([T_]),
        torch.tensor([target]),
        alpha=alpha,
        beta=beta,
        T=T,
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def mdistiller_dkd(logits_s, logits_t, target, alpha, beta, T):
    """mdistiller's DKD.py (-1000 offset on the target), for comparison."""
    gt = F.one_hot(target, logits_s.shape[1]).float()
    other = 1 - gt
    ps = F.softmax(logits_s / T, 1)
    pt = F.softmax(logits_t / T, 1)
    ps = torch.cat([(ps * gt).sum(1, True), (ps * other).sum(1, True)], 1)
    pt = torch.cat([(pt * gt).sum(1, True), (pt * other).sum(1, True)], 1)
    tckd = F.kl_div(torch.log(ps), pt, reduction="sum") * T**2
    pt2 = F.softmax(logits_t / T - 1000.0 * gt, 1)
    ls2 = F.log_softmax(logits_s / T - 1000.0 * gt, 1)
    nckd = F.kl_div(ls2, pt2, reduction="sum") * T**2
    return (alpha * tckd + beta * nckd) / target.shape[0]


def test_dkd_matches_mdistiller():
    g = torch.Generator().manual_seed(0)
    s, t = (
        torch.randn(16, 50, generator=g) * 3,
        torch.randn(16, 50, generator=g) * 3,
    )
    y = torch.randint(0, 50, (16,), generator=g)
    ours = dkd_loss(s, t, y, alpha=1.0, beta=8.0, T=4.0)
    ref = mdistiller_dkd(s, t, y, 1.0, 8.0, 4.0)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-4)


def test_confusion_set_hand_example():
    # Non-target probabilities renormalised: 0.6, 0.2, 0.12, 0.08
    t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    y = torch.tensor([0])
    assert confusion_mask(t, y, 0.5).int().tolist() == [[0, 1, 0, 0, 0]]
    assert confusion_mask(t, y, 0.7).int().tolist() == [[0, 1, 1, 0, 0]]
    assert confusion_mask(t, y, 0.85).int().tolist() == [[0, 1, 1, 1, 0]]
    assert confusion_mask(t, y, 0.95).int().tolist() == [[0, 1, 1, 1, 1]]
    assert confusion_mask(t, y, 1e-6).int().tolist() == [[0, 1, 0, 0, 0]]
    # at T = 4 the non-targets renormalised are 0.33, 0.25, 0.22, 0.20
    assert confusion_mask(t, y, 0.6).int().tolist() == [[0, 1, 0, 0, 0]]
    got = confusion_mask(t, y, 0.6, T=4.0).int().tolist()
    assert got == [[0, 1, 1, 1, 0]]
    # Target in the middle of the ranking: it is never in the set
    y2 = torch.tensor([2])
    assert confusion_mask(t, y2, 0.99).int().tolist() == [[1, 1, 0, 1, 1]]


# Teacher posterior (0.5, 0.3, 0.1, 0.06, 0.04), target 0, tau 0.7. Cut at
# T = 2 (the default, partition_T = T) the non-targets renormalised are
# sqrt(p) / sum = 0.418, 0.242, 0.187, 0.153: F = {1, 2, 3} (0.418 + 0.242 =
# 0.660 < 0.7). Cut at temperature 1: 0.6, 0.2, 0.12, 0.08: F = {1, 2}.
@pytest.mark.parametrize(
    "partition_T, conf, back", [(None, [1, 2, 3], [4]), (1.0, [1, 2], [3, 4])]
)
def test_trkd_hand_value(partition_T, conf, back):
    T, tau = 2.0, 0.7
    t = [math.log(p) for p in (0.5, 0.3, 0.1, 0.06, 0.04)]
    s = [0.3, 0.1, 0.4, -0.2, 0.0]
    pt, ps = softmax(t, T), softmax(s, T)

    def masses(p):
        return [p[0], sum(p[i] for i in conf), sum(p[i] for i in back)]

    three = kl(masses(pt), masses(ps))
    inner = kl(
        softmax([t[i] for i in conf], T), softmax([s[i] for i in conf], T)
    )
    expected = T**2 * (1.0 * three + 8.0 * inner)
    got = trkd_loss(
        torch.tensor([s]),
        torch.tensor([t]),
        torch.tensor([0]),
        tau=tau,
        T=T,
        partition_T=partition_T,
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trkd_tau_one_equals_dkd(seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(32, 269, generator=g) * 5
    t = torch.randn(32, 269, generator=g) * 5
    y = torch.randint(0, 269, (32,), generator=g)
    a = trkd_loss(s, t, y, tau=1.0)
    b = dkd_loss(s, t, y, alpha=1.0, beta=8.0)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_size_cut_hand_example():
    """cut=size: F is the ceil(tau * 4) most probable of the 4 non-targets,
    whatever their mass; the target is never in F, ties in rank order."""
    t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    y = torch.tensor([0])

    def f(tau, target=y):
        return confusion_mask(t, target, tau, cut="size").int().tolist()

    assert f(0.25) == [[0, 1, 0, 0, 0]]
    assert f(0.26) == [[0, 1, 1, 0, 0]]  # ceil(1.04) = 2
    assert f(0.75) == [[0, 1, 1, 1, 0]]
    assert f(1.0) == [[0, 1, 1, 1, 1]]
    assert f(1e-6) == [[0, 1, 0, 0, 0]]
    assert f(0.5, torch.tensor([1])) == [[1, 0, 1, 0, 0]]
    # a batch: each row its own ranking; the same k for every row
    t2 = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 4.0, 0.0, 1.0]])
    got = confusion_mask(t2, torch.tensor([1, 0]), 0.6, cut="size")
    assert got.int().tolist() == [[0, 0, 1, 1], [0, 1, 0, 1]]
    # the loss with the size cut is the mass-cut loss on the same set
    s = torch.tensor([[0.3, 0.1, 0.4, -0.2, 0.0]])
    a = trkd_loss(s, t, y, tau=0.5, T=1.0, cut="size")  # F = {1, 2}
    b = trkd_loss(s, t, y, tau=0.7, T=1.0)  # F = {1, 2}
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="cut"):
        confusion_mask(t, y, 0.5, cut="count")


def test_masses_sum_to_one():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(8, 30, generator=g) * 4
    y = torch.randint(0, 30, (8,), generator=g)
    for tau in (0.05, 0.3, 0.9, 1.0):
        conf = confusion_mask(t, y, tau)
        gt = F.one_hot(y, 30).bool()
        m = triage_masses(t / 4, gt, conf)
        torch.testing.assert_close(m.sum(-1), torch.ones(8))
        assert conf.any(-1).all() and not (conf & gt).any()


def test_smaller_tau_gives_smaller_confusion_set():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(8, 40, generator=g) * 3
    y = torch.randint(0, 40, (8,), generator=g)
    sizes = [
        confusion_mask(t, y, tau).sum().item() for tau in (1.0, 0.8, 0.3, 0.05)
    ]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


@pytest.mark.parametrize("name", ["kd", "dkd", "trkd"])
def test_gradient_flows_only_to_student(name):
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    loss = {
        "kd": lambda: kd_loss(s, t),
        "dkd": lambda: dkd_loss(s, t, y),
        "trkd": lambda: trkd_loss(s, t, y, tau=0.5),
    }[name]()
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.05])
def test_extreme_logits_and_one_hot_teacher(tau):
    y = torch.tensor([0, 1, 2])
    s = torch.tensor(
        [[1e4, -1e4, 0.0, 0.0], [-1e4, 1e4, 1e4, 0.0], [0.0, 0.0, 0.0, 0.0]],
        requires_grad=True,
    )
    one_hot_teacher = F.one_hot(y, 4).float() * 1e4 - 5e3
    for t in (one_hot_teacher, -one_hot_teacher, s.detach() * -1):
        for loss in (
            trkd_loss(s, t, y, tau=tau),
            dkd_loss(s, t, y),
            kd_loss(s, t),
        ):
            assert torch.isfinite(loss)
            (grad,) = torch.autograd.grad(loss, s)
            assert torch.isfinite(grad).all()


def test_empty_background_no_nan():
    # Two classes: the confusion set is the single non-target, background
    # is empty for every tau.
    s = torch.randn(5, 2, requires_grad=True)
    t = torch.randn(5, 2)
    y = torch.randint(0, 2, (5,))
    loss = trkd_loss(s, t, y, tau=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_identical_logits_give_zero():
    t = torch.randn(6, 12)
    y = torch.randint(0, 12, (6,))
    for tau in (1.0, 0.4):
        assert trkd_loss(t, t, y, tau=tau).item() == pytest.approx(0, abs=1e-6)
    assert dkd_loss(t, t, y).item() == pytest.approx(0, abs=1e-6)


def test_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        trkd_loss(
            torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), 0.0
        )


def test_helpers():
    p = torch.tensor([[0.2, 0.8]])
    q = torch.tensor([[0.5, 0.5]])
    assert mass_kl(p, q).item() == pytest.approx(kl([0.2, 0.8], [0.5, 0.5]))
    mask = torch.tensor([[True, True, False]])
    s = torch.tensor([[0.0, 1.0, 50.0]])
    t = torch.tensor([[1.0, 0.0, -50.0]])
    expected = kl(softmax([1.0, 0.0]), softmax([0.0, 1.0]))
    assert masked_kl(s, t, mask).item() == pytest.approx(expected, rel=1e-5)


# GKD (grouped KD, Zhao et al. 2023)
from speechbrain_kd.objectives.gkd import (  # noqa: E402
    GKDLoss,
    gkd_loss,
    group_masses,
    primary_mask,
)


def test_gkd_primary_group_hand_example():
    # Teacher probabilities 0.5, 0.3, 0.1, 0.06, 0.04 (T=1): the primary
    # group is the top classes until 80 % / 90 % / 95 % is reached.
    t = torch.log(torch.tensor([[0.3, 0.04, 0.5, 0.1, 0.06]]))
    assert primary_mask(t, 0.8).int().tolist() == [[1, 0, 1, 0, 0]]
    assert primary_mask(t, 0.85).int().tolist() == [[1, 0, 1, 1, 0]]
    assert primary_mask(t, 0.95).int().tolist() == [[1, 0, 1, 1, 1]]
    assert primary_mask(t, 0.1).int().tolist() == [[0, 0, 1, 0, 0]]
    assert primary_mask(t, 1.0).all()
    # a cutoff the float32 sum 0.5 + 0.3 lands on counts as reached
    t2 = torch.log(torch.tensor([[0.1, 0.5, 0.3, 0.06, 0.04]]))
    assert primary_mask(t2, 0.8).int().tolist() == [[0, 1, 1, 0, 0]]
    assert primary_mask(t2, 0.81).int().tolist() == [[1, 1, 1, 0, 0]]


def test_gkd_hand_value():
    p_t = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    p_s = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    # T=1, threshold 0.8: primary = classes 0, 1 (teacher mass 0.8)
    binary = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    q_t = [0.5 / 0.8, 0.3 / 0.8]
    within = sum(q * math.log(q / 0.5) for q in q_t)
    want = 2.0 * binary + 3.0 * within
    got = gkd_loss(
        p_s.log(),
        p_t.log(),
        threshold=0.8,
        lambda_binary=2.0,
        lambda_primary=3.0,
        T=1.0,
    )
    assert math.isclose(float(got), want, rel_tol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gkd_threshold_one_equals_kd(seed):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(8, 30, generator=g), torch.randn(8, 30, generator=g)
    full = gkd_loss(s, t, threshold=1.0, lambda_primary=1.0, T=2.0)
    assert torch.allclose(full, kd_loss(s, t, T=2.0), atol=1e-6)
    assert float(gkd_loss(s, t, threshold=0.5)) >= 0


def test_gkd_drops_the_tail():
    # Changing the student's distribution inside the secondary group (same
    # secondary mass) leaves the loss unchanged.
    t = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.03, 0.02]]))
    s1 = torch.log(torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.1]]))
    s2 = torch.log(torch.tensor([[0.4, 0.3, 0.28, 0.01, 0.01]]))
    a = gkd_loss(s1, t, threshold=0.9, T=1.0)
    b = gkd_loss(s2, t, threshold=0.9, T=1.0)
    assert torch.allclose(a, b, atol=1e-6)
    assert float(a) > 0


def test_gkd_gradients_and_checks():
    s = torch.randn(4, 12, requires_grad=True)
    t = torch.randn(4, 12, requires_grad=True)
    gkd_loss(s, t, threshold=0.7).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    masses = group_masses(torch.randn(3, 5), torch.rand(3, 5) > 0.5)
    assert torch.allclose(masses.sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match="threshold"):
        gkd_loss(torch.randn(2, 4), torch.randn(2, 4), threshold=0.0)
    with pytest.raises(ValueError, match="targets"):
        gkd_loss(
            torch.randn(2, 4), torch.randn(2, 4), targets=torch.tensor([9, 0])
        )
    big = torch.tensor([[1e4, -1e4, 0.0]])
    assert torch.isfinite(gkd_loss(big, -big, threshold=0.5))


def realistic_teacher_logits(num_classes=250, batch=256, seed=0):
    """AAM-style teacher logits: 30 x cosine between embeddings and class
    weights, the classes in 25 groups of 10 similar speakers, target cosine
    ~0.74 (an early teacher)."""
    g = torch.Generator().manual_seed(seed)
    dim = 192
    centre = F.normalize(torch.randn(25, dim, generator=g), dim=-1)
    spread = F.normalize(torch.randn(num_classes, dim, generator=g), dim=-1)
    weights = F.normalize(
        centre.repeat_interleave(num_classes // 25, 0) + 2.0 * spread, dim=-1
    )
    y = torch.randint(0, num_classes, (batch,), generator=g)
    noise = F.normalize(torch.randn(batch, dim, generator=g), dim=-1)
    x = F.normalize(weights[y] + 0.9 * noise, dim=-1)
    return 30.0 * x @ weights.T, y


def test_confusion_set_is_not_one_class_at_T():
    """At tau 0.05 the default triage (at T = 4) keeps several confusable
    classes; cut at temperature 1 the set collapses to one class, and the
    confusion term is then exactly zero."""
    t, y = realistic_teacher_logits()
    s = t + torch.randn(t.shape, generator=torch.Generator().manual_seed(1))
    loss = TRKDLoss(T=4.0)
    loss(s, t, y, tau=0.05)
    stats = loss.epoch_stats()
    assert stats["F_median"] >= 2 and stats["F_mean"] > 2
    old = TRKDLoss(T=4.0, partition_T=1.0)
    old(s, t, y, tau=0.05)
    assert old.epoch_stats()["F_median"] == 1
    conf_old = confusion_mask(t, y, 0.05, T=1.0)
    assert (conf_old.sum(-1) == 1).float().mean() > 0.9
    conf_new = confusion_mask(t, y, 0.05, T=4.0)
    assert (conf_new.sum(-1) == 1).float().mean() < 0.1
    # one class in F: nothing to distil inside it
    one = conf_old.sum(-1) == 1
    inner = masked_kl(s[one] / 4, t[one] / 4, conf_old[one])
    assert torch.all(inner.abs() < 1e-6)


def test_partition_statistics_hand_values():
    """TRKDLoss logs |F| and the teacher's masses at T exactly."""
    t = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]] * 2))
    y = torch.tensor([0, 1])
    loss = TRKDLoss(T=1.0)
    loss(torch.zeros(2, 5), t, y, tau=0.7)
    stats = loss.epoch_stats()
    # row 0: F = {1, 2} (0.6 + 0.2 of the non-targets); row 1 (target 1):
    # non-targets 0.5, 0.1, 0.06, 0.04 renormalised 0.714...: F = {0}
    assert stats["F_mean"] == 1.5 and stats["F_median"] == 1.0
    assert stats["mass_target"] == pytest.approx((0.5 + 0.3) / 2)
    assert stats["mass_confusion"] == pytest.approx((0.4 + 0.5) / 2)
    assert stats["mass_background"] == pytest.approx((0.1 + 0.2) / 2)
    gkd = GKDLoss(threshold=0.8, T=1.0)
    gkd(torch.zeros(2, 5), t)
    g = gkd.epoch_stats()
    assert g["P_mean"] == 2.0 and g["mass_primary"] == pytest.approx(0.8)


def test_gkd_and_trkd_share_the_cut():
    """GKD's primary group is TRKD's rule without the target set apart
    (same helper, same float slack)."""
    t, y = realistic_teacher_logits(batch=64)
    for cutoff in (0.05, 0.5, 0.9):
        primary = primary_mask(t, cutoff, T=4.0)
        torch.testing.assert_close(primary, top_mass_set(t, cutoff, T=4.0))


def test_top_class_mask():
    got = top_class_mask(torch.tensor([[0.2, 0.5, 0.3]])).int().tolist()
    assert got == [[0, 1, 0]]
