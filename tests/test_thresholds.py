"""Decision thresholds and score calibration of published models: the
operating points on hand values, Cllr / minCllr / linear calibration on
hand values and synthetic Gaussian scores, and the documented use of a
published folder (its card's threshold with SpeakerRecognition)."""

import math
import re

import numpy as np
import pytest
import torch
from conftest import publish_tiny_ecapa

from speechbrain_kd.scoring import (
    calibrated_llr,
    check_thresholds,
    cllr,
    detection_metrics,
    error_rates,
    fit_linear_calibration,
    linear_calibration,
    min_cllr,
    operating_points,
    pav,
    pav_llrs,
    published_thresholds,
    rates_at,
    threshold_at_far,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_scores(n_tar=400, n_non=4000, shift=2.0, seed=0):
    """Target N(shift/2, 1) and non-target N(-shift/2, 1) scores: the true
    LLR is ``shift * score``."""
    rng = np.random.default_rng(seed)
    return (
        rng.normal(shift / 2, 1.0, n_tar),
        rng.normal(-shift / 2, 1.0, n_non),
    )


# ------------------------------------------------------ operating points


def test_threshold_at_far_hand_values():
    neg = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    pos = [0.55, 0.95, 1.2]
    # 10 % of 10 non-targets: 1 false accept allowed (1.0 > 0.9)
    p = threshold_at_far(pos, neg, 0.1)
    assert p["threshold"] == pytest.approx(0.9)
    assert (p["far"], p["frr"]) == (0.1, pytest.approx(1 / 3))
    # 25 %: 2 allowed (floor), so 0.8; 5 %: none, so the highest, 1.0
    assert threshold_at_far(pos, neg, 0.25)["threshold"] == pytest.approx(0.8)
    p = threshold_at_far(pos, neg, 0.05)
    assert (p["threshold"], p["far"]) == (1.0, 0.0)
    assert p["frr"] == pytest.approx(2 / 3)
    # Ties at the threshold are rejected (accept: score > threshold)
    p = threshold_at_far([1.0], [0.5, 0.5, 0.5, 0.2], 0.5)
    assert (p["threshold"], p["far"]) == (0.5, 0.0)


def test_threshold_at_far_is_the_smallest_meeting_the_target():
    """Against a brute-force sweep of error_rates' candidate thresholds:
    the first (smallest) one whose FAR is <= the target, same rates."""
    rng = np.random.default_rng(3)
    for n_non in (7, 100, 999, 2500):
        pos = torch.from_numpy(rng.normal(1, 1, 50).astype(np.float32))
        neg = torch.from_numpy(
            np.round(rng.normal(0, 1, n_non), 2).astype(np.float32)
        )  # rounded: ties
        thr, p_miss, p_fa = error_rates(pos, neg)
        n_fa = (p_fa * n_non).round().long()
        for far in (0.2, 0.01, 0.001):
            got = threshold_at_far(pos, neg, far)
            i = int(torch.nonzero(n_fa <= math.floor(far * n_non))[0])
            assert got["threshold"] == float(thr[i])
            assert got["far"] == pytest.approx(float(p_fa[i])) and (
                got["far"] <= far
            )
            assert got["frr"] == pytest.approx(float(p_miss[i]))
            if i > 0:  # the candidate just below breaks the target
                assert float(p_fa[i - 1]) > far


def test_operating_points_and_rates():
    pos, neg = [0.6, 0.7, 0.8, 0.5], [0.4, 0.3, 0.2, 0.1]
    pts = operating_points(pos, neg, fars=(0.5, 0.01))
    assert list(pts) == ["eer", "far_50pct", "far_1pct"]
    assert pts["eer"] == rates_at(pos, neg, pts["eer"]["threshold"])
    assert pts["eer"]["far"] == pts["eer"]["frr"] == 0.0
    assert pts["far_50pct"]["threshold"] == pytest.approx(0.2)
    assert pts["far_1pct"]["threshold"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="far must be in"):
        threshold_at_far(pos, neg, 1.0)
    with pytest.raises(ValueError, match="negative_scores is empty"):
        operating_points(pos, [])


def test_far_1pct_on_gaussian_trials():
    pos, neg = gaussian_scores()
    pts = operating_points(pos, neg)
    for key, far in (("far_1pct", 0.01), ("far_0.1pct", 0.001)):
        t = pts[key]["threshold"]
        assert np.mean(neg > t) <= far
        assert np.mean(neg >= t) > far  # lower thresholds break it
        assert pts[key]["frr"] == np.mean(pos <= t)
    assert pts["eer"]["threshold"] < pts["far_1pct"]["threshold"]
    assert pts["far_1pct"]["threshold"] <= pts["far_0.1pct"]["threshold"]
    # d' = 2: EER ~ Phi(-1) = 15.9 %
    assert pts["eer"]["frr"] == pytest.approx(0.159, abs=0.03)


# ------------------------------------------------------- calibration


def test_pav_hand_values():
    assert pav([3.0, 1.0, 2.0]).tolist() == [2.0, 2.0, 2.0]
    assert pav([0.0, 1.0, 0.0, 1.0]).tolist() == [0.0, 0.5, 0.5, 1.0]
    y = np.random.default_rng(0).random(200)
    fit = pav(y)
    assert (np.diff(fit) >= 0).all() and fit.sum() == pytest.approx(y.sum())
    with pytest.raises(ValueError, match="positive"):
        pav([1.0, 2.0], weights=[1.0, 0.0])


def test_pav_llrs_pool_ties():
    # Tied scores of a target and a non-target: one block, posterior 1/2
    t, n = pav_llrs([0.5, 0.9], [0.5, 0.1])
    assert t.tolist() == [0.0, math.inf] and n.tolist() == [0.0, -math.inf]
    # Unequal counts: the list's prior log-odds is removed (2 : 1)
    t, n = pav_llrs([0.5, 0.5], [0.5])
    assert np.abs(np.concatenate([t, n])).max() < 1e-12  # 2/3 vs 2 : 1


def test_cllr_hand_values():
    assert cllr([0.0], [0.0]) == 1.0
    assert cllr([math.inf], [-math.inf]) == 0.0
    assert cllr([math.log(3)], [-math.log(3)]) == pytest.approx(
        math.log2(4 / 3)
    )
    with pytest.raises(ValueError, match="target and non-target"):
        cllr([], [0.0])


def test_separated_scores_cost_almost_nothing():
    pos = np.linspace(0.6, 0.9, 50)
    neg = np.linspace(-0.2, 0.4, 500)
    c = linear_calibration(pos, neg)
    assert min_cllr(pos, neg) == 0.0
    assert c["Cllr"] < 0.01 and c["a"] > 0
    # the fitted map separates them at llr 0
    assert (calibrated_llr(pos, c["a"], c["b"]) > 0).all()
    assert (calibrated_llr(neg, c["a"], c["b"]) < 0).all()


def test_min_cllr_and_calibrated_llr_hand_values():
    assert min_cllr([0.9, 0.8], [0.1, 0.2]) == 0.0  # separated
    assert min_cllr([0.5, 0.5], [0.5, 0.5]) == 1.0  # uninformative
    llr = calibrated_llr([0.2, 0.7], a=10.0, b=-4.0)
    assert llr.dtype == np.float64 and llr.tolist() == [-2.0, 3.0]


def test_uninformative_scores_cost_one_bit():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    c = linear_calibration(pos, neg)
    assert c["Cllr"] == pytest.approx(1.0, abs=0.01)
    assert c["minCllr"] <= c["Cllr"]
    assert abs(c["a"]) < 0.2 and abs(c["b"]) < 0.2
    # constant scores: nothing to fit, exactly 1 bit
    assert fit_linear_calibration([0.3] * 3, [0.3] * 5) == (0.0, 0.0)
    assert linear_calibration([0.3] * 3, [0.3] * 5)["Cllr"] == 1.0


def test_calibration_of_gaussian_scores_finds_the_true_llr():
    """Equal-variance Gaussians, means +-1: the true LLR is 2 * score, at
    any prior of the fit; minCllr <= Cllr."""
    pos, neg = gaussian_scores(n_tar=5000, n_non=20000, seed=2)
    for prior in (0.5, 0.1):
        a, b = fit_linear_calibration(pos, neg, prior=prior)
        assert a == pytest.approx(2.0, abs=0.1)
        assert b == pytest.approx(0.0, abs=0.1)
    c = linear_calibration(pos, neg)
    assert c["minCllr"] <= c["Cllr"] < 1
    # Cllr of the true LLRs, close to the fitted one
    assert cllr(2 * pos, 2 * neg) == pytest.approx(c["Cllr"], abs=0.01)


def test_calibration_repairs_badly_scaled_scores():
    """Cosine-like scores used directly as LLRs (too timid, shifted):
    calibration lowers Cllr, down towards minCllr."""
    pos, neg = gaussian_scores(seed=4)
    raw_pos, raw_neg = 0.1 * pos + 0.5, 0.1 * neg + 0.5
    raw = cllr(raw_pos, raw_neg)
    c = linear_calibration(raw_pos, raw_neg)
    assert c["Cllr"] < raw - 0.3
    assert c["minCllr"] <= c["Cllr"]
    assert c["a"] == pytest.approx(20.0, rel=0.1)  # undoes the 0.1 scale
    # overconfident scores (x 10) too
    assert linear_calibration(10 * pos, 10 * neg)["Cllr"] < cllr(
        10 * pos, 10 * neg
    )


def test_calibration_errors_name_the_input():
    with pytest.raises(ValueError, match="prior must be in"):
        fit_linear_calibration([1.0], [0.0], prior=1.0)
    with pytest.raises(ValueError, match="positive_scores holds NaN"):
        linear_calibration([math.nan], [0.0])
    with pytest.raises(ValueError, match="negative_scores is empty"):
        min_cllr([1.0], [])


# --------------------------------------------------- published folders


def trial_result(pos, neg, name="trials"):
    """A result as speechbrain_kd.scoring.verify returns it (one list)."""
    figures = detection_metrics(torch.tensor(pos), torch.tensor(neg))
    return {"trial_list": name, "by_list": {name: {"cosine": figures}}}


def test_published_thresholds_from_a_verify_result():
    pos, neg = gaussian_scores(n_tar=50, n_non=300)
    result = trial_result(pos, neg, "Vox1-O")
    t, c = published_thresholds(result, "/x/veri_test2.txt")
    assert check_thresholds(t) == ["eer", "far_1pct", "far_0.1pct"]
    assert (t["corpus"], t["trial_list"], t["scoring"]) == (
        "Vox1-O",
        "veri_test2.txt",
        "cosine",
    )
    assert (t["target_trials"], t["nontarget_trials"]) == (50, 300)
    assert set(c) == {"a", "b", "prior", "Cllr", "minCllr"}
    # A list scored with PLDA only: no cosine thresholds to publish
    figures = result["by_list"]["Vox1-O"]
    result["by_list"]["Vox1-O"] = {"plda": figures["cosine"]}
    assert published_thresholds(result) == (None, None)


def publish_random(dest, **kwargs):
    """A random tiny ECAPA-TDNN published with export_pretrained."""
    return publish_tiny_ecapa(
        dest, init_seed=0, card={"title": "thresholds test"}, **kwargs
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny folder with the thresholds and calibration of Gaussian
    cosine-like trial scores (targets ~0.55, non-targets ~0.25, sd 0.15)."""
    pos, neg = gaussian_scores(n_tar=300, n_non=3000, seed=5)
    pos, neg = 0.4 + 0.15 * pos, 0.4 + 0.15 * neg
    pos, neg = pos.astype(np.float32), neg.astype(np.float32)
    t, c = published_thresholds(trial_result(pos, neg), "/data/veri_test2.txt")
    folder = tmp_path_factory.mktemp("published") / "pretrained"
    publish_random(folder, thresholds=t, calibration=c)
    return folder, t, c, pos, neg


def card_thresholds(readme):
    """{operating point: threshold} of a model card's table."""
    rows = re.findall(r"^\| (EER|FAR [\d.]+ %) \| (-?[\d.]+) \|", readme, re.M)
    return {name: float(value) for name, value in rows}


def test_thresholds_land_in_the_card_and_hyperparams(published):
    from hyperpyyaml import load_hyperpyyaml

    folder, t, c, pos, neg = published
    readme = (folder / "README.md").read_text()
    card = card_thresholds(readme)
    assert list(card) == ["EER", "FAR 1 %", "FAR 0.1 %"]
    assert "300 target and 3,000 non-target trials" in readme
    assert "`trials` (`veri_test2.txt`)" in readme
    assert "score > threshold" in readme
    assert "recalibrate on trials of your own domain" in readme
    assert "language, channel" in readme and "Cllr" in readme
    with open(folder / "hyperparams.yaml") as f:
        hp = load_hyperpyyaml(f)
    vt, sc = hp["verification_thresholds"], hp["score_calibration"]
    for key, label in (
        ("eer", "EER"),
        ("far_1pct", "FAR 1 %"),
        ("far_0.1pct", "FAR 0.1 %"),
    ):
        assert vt[key] == t[key]["threshold"]  # exact
        assert card[label] == pytest.approx(vt[key], abs=1e-6)
        assert vt["frr"][key] == t[key]["frr"]
        assert vt["far"][key] == t[key]["far"]
    assert vt["trials"] == {"target": 300, "nontarget": 3000}
    assert (vt["corpus"], vt["trial_list"]) == ("trials", "veri_test2.txt")
    assert vt["accept"] == "score > threshold"
    # The FAR-1 % threshold meets its target on the trials it comes from
    assert np.mean(neg > vt["far_1pct"]) <= 0.01
    assert np.mean(neg > vt["far_0.1pct"]) <= 0.001
    assert {k: sc[k] for k in ("a", "b", "prior")} == {
        k: c[k] for k in ("a", "b", "prior")
    }
    assert sc["minCllr"] <= sc["Cllr"] < 1
    assert vt["eer"] < vt["far_1pct"] < vt["far_0.1pct"]


def test_verify_two_files_with_the_cards_threshold(published, tmp_path):
    """The documented use: SpeakerRecognition on two 16 kHz WAV files, the
    decision taken at the card's EER threshold is ``score > threshold``."""
    import soundfile
    from speechbrain.inference.speaker import SpeakerRecognition

    folder = published[0]
    threshold = card_thresholds((folder / "README.md").read_text())["EER"]
    rng = np.random.default_rng(0)
    paths = []
    for name, gain in (("a.wav", 0.1), ("b.wav", 0.3)):
        path = str(tmp_path / name)
        soundfile.write(path, gain * rng.standard_normal(16000), 16000)
        paths.append(path)
    model = SpeakerRecognition.from_hparams(
        source=str(folder), savedir=str(tmp_path / "load")
    )
    assert model.hparams.verification_thresholds["eer"] == pytest.approx(
        threshold, abs=1e-6
    )
    score, _ = model.verify_files(*paths)  # its decision: threshold 0.25
    wav_a, wav_b = (model.load_audio(p).unsqueeze(0) for p in paths)
    same, decision = model.verify_batch(wav_a, wav_b, threshold=threshold)
    assert float(same) == pytest.approx(float(score), abs=1e-6)
    assert bool(decision) == bool(score > threshold)
    # Strict: a score equal to the threshold is rejected
    _, at = model.verify_batch(wav_a, wav_b, threshold=float(same))
    assert not bool(at)
    # The same file twice: cosine 1, above any threshold of the card
    score, _ = model.verify_files(paths[0], paths[0])
    assert bool(score > threshold)


def test_without_thresholds_nothing_changes(tmp_path):
    from speechbrain.inference.speaker import EncoderClassifier

    folder = publish_random(tmp_path / "plain")
    text = (tmp_path / "plain" / "hyperparams.yaml").read_text()
    assert "verification_thresholds" not in text
    assert "score_calibration" not in text
    readme = (tmp_path / "plain" / "README.md").read_text()
    assert "Same speaker or not" not in readme
    model = EncoderClassifier.from_hparams(
        source=folder, savedir=str(tmp_path / "load")
    )
    assert not hasattr(model.hparams, "verification_thresholds")


def test_bad_thresholds_publish_nothing(tmp_path):
    dest = tmp_path / "bad"
    with pytest.raises(KeyError, match="thresholds lacks"):
        publish_random(dest, thresholds={"corpus": "x"})
    with pytest.raises(ValueError, match=r"thresholds\['far_1pct'\]"):
        publish_random(
            dest,
            thresholds={
                "corpus": "x",
                "target_trials": 1,
                "nontarget_trials": 1,
                "eer": {"threshold": 0.5, "far": 0.0, "frr": 0.0},
                "far_1pct": {"threshold": 0.5},
            },
        )
    with pytest.raises(ValueError, match=r"calibration\['a'\]"):
        publish_random(dest, calibration={"a": math.nan, "b": 0.0})
    assert not dest.exists()
