"""EER / minDCF: agreement with SpeechBrain, scale, scoring."""

import pytest
import torch
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_kd.data import read_trials
from speechbrain_kd.scoring import (
    compute_eer,
    compute_min_dcf,
    detection_metrics,
    score_trials,
)


def draws():
    g = torch.Generator().manual_seed(0)
    for n in (3, 20, 200, 1500):
        pos = torch.randn(n, generator=g) + 1.0
        neg = torch.randn(2 * n + 1, generator=g)
        yield pos, neg
        yield pos.round(decimals=1), neg.round(decimals=1)  # many ties
    yield torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.5, 0.5])
    yield torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2])  # separable
    yield torch.tensor([0.1, 0.2]), torch.tensor([0.9, 0.8])  # inverted


@pytest.mark.parametrize("pos,neg", list(draws()))
def test_agrees_with_speechbrain(pos, neg):
    eer, thr = compute_eer(pos, neg)
    sb_eer, sb_thr = EER(pos, neg)
    assert eer == pytest.approx(sb_eer, abs=1e-7)
    assert thr == pytest.approx(sb_thr, abs=1e-6)
    for p_target in (0.01, 0.05, 0.5):
        dcf, _ = compute_min_dcf(pos, neg, p_target=p_target)
        sb_dcf, _ = minDCF(pos, neg, p_target=p_target)
        assert dcf == pytest.approx(sb_dcf, abs=1e-7)


def test_numpy_input_and_known_values():
    import numpy as np

    pos, neg = np.array([0.6, 0.8, 0.3]), np.array([0.2, 0.7, 0.1, 0.0])
    eer, _ = compute_eer(pos, neg)
    # One of 3 targets below one of 4 non-targets: 1/3 misses vs 1/4 FA
    assert eer == pytest.approx((1 / 3 + 1 / 4) / 2)


def test_vox1_h_scale():
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(290_000, generator=g) + 2.0
    neg = torch.randn(290_000, generator=g)
    eer, _ = compute_eer(pos, neg)
    # Two unit Gaussians 2 apart cross at 1: EER = P(N(0,1) > 1) = 0.1587
    assert eer == pytest.approx(0.1587, abs=0.003)
    dcf, _ = compute_min_dcf(pos, neg)
    assert 0 < dcf < 0.01


def test_bad_scores():
    with pytest.raises(ValueError, match="empty"):
        compute_eer(torch.tensor([]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="NaN"):
        compute_eer(torch.tensor([float("nan")]), torch.tensor([0.1]))


def test_cosine_trial_scores_and_missing(tmp_path):
    emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([2.0, 0.1])}
    emb["c"] = torch.tensor([-1.0, 0.0])
    scores, labels = score_trials(emb, [(1, "a", "b"), (0, "a", "c")])
    pos, neg = scores[labels], scores[~labels]
    assert pos.item() > 0.99 and neg.item() == pytest.approx(-1.0)
    with pytest.raises(KeyError, match="no embedding"):
        score_trials(emb, [(1, "a", "zzz")])
    # A trial-list file, scored as the recipes' verify scores it
    trials = tmp_path / "trials.txt"
    trials.write_text("1 a.wav b.wav\n0 a.wav c.flac\n")
    scores, labels = score_trials(emb, read_trials(str(trials)))
    result = detection_metrics(scores[labels], scores[~labels])
    assert result["EER"] == 0.0 and result["target_trials"] == 1
