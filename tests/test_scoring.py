"""Score normalisation (z/t/s-norm, AS-norm) and PLDA back-ends."""

import numpy
import pytest
import torch

from speechbrain_kd.data import read_trials
from speechbrain_kd.scoring import (
    cohort_stats,
    compute_eer,
    detection_metrics,
    pair_cosine,
    plda_pair_scores,
    score_trials,
    train_plda,
    trial_indices,
)


def speechbrain_norm(enrol, test, cohort, method, cohort_size=None):
    """SpeechBrain's speaker_verification_cosine.py score_norm, one trial
    (transcribed from its get_verification_scores)."""
    similarity = torch.nn.CosineSimilarity(dim=-1, eps=1e-6)
    train_cohort = cohort.unsqueeze(1)  # [C, 1, dim]
    enrol, test = enrol.view(1, -1), test.view(1, -1)
    enrol_rep = enrol.repeat(train_cohort.shape[0], 1, 1)
    score_e_c = similarity(enrol_rep, train_cohort)
    if cohort_size is not None:
        score_e_c = torch.topk(score_e_c, k=cohort_size, dim=0)[0]
    mean_e_c, std_e_c = torch.mean(score_e_c, dim=0), torch.std(score_e_c, 0)
    test_rep = test.repeat(train_cohort.shape[0], 1, 1)
    score_t_c = similarity(test_rep, train_cohort)
    if cohort_size is not None:
        score_t_c = torch.topk(score_t_c, k=cohort_size, dim=0)[0]
    mean_t_c, std_t_c = torch.mean(score_t_c, dim=0), torch.std(score_t_c, 0)
    score = similarity(enrol, test)[0]
    if method == "z-norm":
        return (score - mean_e_c) / std_e_c
    if method == "t-norm":
        return (score - mean_t_c) / std_t_c
    score_e = (score - mean_e_c) / std_e_c
    score_t = (score - mean_t_c) / std_t_c
    return 0.5 * (score_e + score_t)


def synthetic(num_utts=12, dim=8, cohort=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = {f"u{i}": torch.randn(dim, generator=g) for i in range(num_utts)}
    trials = [
        (int(i % 3 == 0), f"u{i}", f"u{(i * 5 + 1) % num_utts}")
        for i in range(num_utts)
    ]
    return emb, trials, torch.randn(cohort, dim, generator=g)


def test_norm_by_hand():
    """Two-dimensional case computed on paper."""
    emb = {"e": torch.tensor([1.0, 0.0]), "t": torch.tensor([0.0, 2.0])}
    # Cohort at 0, 90 and 180 degrees from e; at 90, 0, 90 from t
    cohort = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    trials = [(1, "e", "t")]
    # raw cosine 0; e-cohort scores (1, 0, -1): mean 0, std 1;
    # t-cohort scores (0, 1, 0): mean 1/3, std 1/sqrt(3)
    s, _ = score_trials(emb, trials, "z-norm", cohort=cohort)
    assert s.item() == pytest.approx(0.0, abs=1e-6)
    s, _ = score_trials(emb, trials, "t-norm", cohort=cohort)
    assert s.item() == pytest.approx(-(1 / 3) * 3**0.5, abs=1e-6)
    s, _ = score_trials(emb, trials, "s-norm", cohort=cohort)
    assert s.item() == pytest.approx(-(1 / 6) * 3**0.5, abs=1e-6)
    # top 2: e keeps (1, 0): mean 0.5, std 0.7071; t keeps (1, 0) too
    s, _ = score_trials(emb, trials, "as-norm", cohort=cohort, top_k=2)
    assert s.item() == pytest.approx(-0.5 / 2**-0.5, abs=1e-6)


@pytest.mark.parametrize("method", ["z-norm", "t-norm", "s-norm"])
def test_norms_match_speechbrain(method):
    emb, trials, cohort = synthetic()
    scores, labels = score_trials(emb, trials, method, cohort=cohort)
    expected = [
        speechbrain_norm(emb[e], emb[t], cohort, method) for _, e, t in trials
    ]
    torch.testing.assert_close(scores, torch.stack(expected).view(-1))
    assert labels.tolist() == [bool(lab) for lab, _, _ in trials]


@pytest.mark.parametrize("top_k", [2, 7, 40])
def test_as_norm_is_speechbrain_s_norm_with_cohort_size(top_k):
    emb, trials, cohort = synthetic(seed=top_k)
    scores, _ = score_trials(emb, trials, "as-norm", cohort=cohort, top_k=top_k)
    expected = [
        speechbrain_norm(emb[e], emb[t], cohort, "s-norm", cohort_size=top_k)
        for _, e, t in trials
    ]
    # float32: a top-2 std can be tiny, so compare relatively
    torch.testing.assert_close(
        scores, torch.stack(expected).view(-1), rtol=1e-4, atol=1e-5
    )


def test_chunking_changes_nothing():
    emb, trials, cohort = synthetic(num_utts=30, cohort=50)
    matrix, e, t, _ = trial_indices(emb, trials)
    whole = cohort_stats(matrix, cohort, top_k=9)
    small = cohort_stats(matrix, cohort, top_k=9, max_elements=60)
    for a, b in zip(whole, small):
        torch.testing.assert_close(a, b)
    enrol = torch.stack([emb[e] for _, e, _ in trials])
    test = torch.stack([emb[t] for _, _, t in trials])
    direct = torch.nn.functional.cosine_similarity(enrol, test, eps=1e-6)
    chunked = pair_cosine(matrix, e, t, chunk_size=4)
    assert torch.equal(chunked, direct)
    scores, _ = score_trials(emb, trials, "cosine")
    assert torch.equal(scores, direct)


def test_each_utterance_stored_once():
    emb = {k: torch.randn(4) for k in "abc"}
    trials = [(1, "a", "b"), (0, "a", "c"), (1, "b", "c"), (0, "c", "a")]
    matrix, e, t, _ = trial_indices(emb, trials)
    assert matrix.shape == (3, 4)
    assert torch.equal(matrix[e[3]], emb["c"]) and torch.equal(
        matrix[t[3]], emb["a"]
    )


def test_errors():
    emb, trials, cohort = synthetic()
    with pytest.raises(ValueError, match="Unknown scoring method"):
        score_trials(emb, trials, "x-norm")
    with pytest.raises(ValueError, match="needs a cohort"):
        score_trials(emb, trials, "s-norm")
    with pytest.raises(ValueError, match="needs top_k"):
        score_trials(emb, trials, "as-norm", cohort=cohort)
    with pytest.raises(ValueError, match="top_k must be in"):
        score_trials(emb, trials, "as-norm", cohort=cohort, top_k=41)
    with pytest.raises(ValueError, match="dimensions"):
        score_trials(emb, trials, "s-norm", cohort=torch.randn(5, 3))
    with pytest.raises(ValueError, match="needs a trained plda"):
        score_trials(emb, trials, "plda")
    with pytest.raises(KeyError, match="no embedding"):
        score_trials(emb, [(1, "u1", "zz")])


def gaussian_speakers(num_spk, per_spk, dim, seed, between=3.0, within=1.0):
    """x-vector-like data: speaker means ~ N(0, between^2), sessions
    around them ~ N(0, within^2) plus a shared offset."""
    rng = numpy.random.default_rng(seed)
    offset = numpy.random.default_rng(99).normal(size=dim) * 5  # shared
    means = rng.normal(size=(num_spk, dim)) * between
    emb = means[:, None, :] + rng.normal(size=(num_spk, per_spk, dim)) * within
    emb = emb.reshape(-1, dim) + offset
    speakers = [f"s{i}" for i in range(num_spk) for _ in range(per_spk)]
    return torch.from_numpy(emb), speakers


def test_plda_separates_synthetic_speakers(tmp_path):
    train, train_spk = gaussian_speakers(60, 8, 10, seed=0)
    plda = train_plda(train, train_spk, rank_f=10, nb_iter=10)
    test, test_spk = gaussian_speakers(20, 4, 10, seed=1)
    # New speakers (another draw), same within/between structure
    emb = {f"u{i}": x for i, x in enumerate(test)}
    n = len(test_spk)
    trials = [
        (int(test_spk[i] == test_spk[j]), f"u{i}", f"u{j}")
        for i in range(n)
        for j in range(i + 1, n)
    ]
    scores, labels = score_trials(emb, trials, "plda", plda=plda)
    pos, neg = scores[labels], scores[~labels]
    assert pos.numel() == 20 * 6 and neg.numel() == len(trials) - 120
    assert pos.mean() > neg.mean() + 5
    eer, _ = compute_eer(pos, neg)
    # The oracle log-likelihood ratio (true B = 9 I, W = I) reaches 0.83 %
    assert eer < 0.02
    # PLDA beats cosine here: the shared offset hurts cosine scoring
    cos, _ = score_trials(emb, trials, "cosine")
    assert eer < compute_eer(cos[labels], cos[~labels])[0]
    path = tmp_path / "trials.txt"
    path.write_text("".join(f"{lab} {e}.wav {t}.wav\n" for lab, e, t in trials))
    scores, labels = score_trials(
        emb, read_trials(str(path)), "plda", plda=plda
    )
    result = detection_metrics(scores[labels], scores[~labels])
    assert result["EER"] == pytest.approx(100 * eer)


def test_plda_pairs_equal_speechbrain_fast_scoring():
    from speechbrain.processing.PLDA_LDA import (
        Ndx,
        StatObject_SB,
        fast_PLDA_scoring,
    )

    train, train_spk = gaussian_speakers(30, 6, 6, seed=2)
    plda = train_plda(train, train_spk, rank_f=4, nb_iter=3)
    enrol, _ = gaussian_speakers(5, 1, 6, seed=3)
    test, _ = gaussian_speakers(7, 1, 6, seed=4)

    def stat(x, prefix):
        ids = numpy.array(
            [f"{prefix}{i:07d}" for i in range(len(x))], dtype="|O"
        )
        none = numpy.array([None] * len(x))
        return StatObject_SB(
            modelset=ids,
            segset=ids,
            start=none,
            stop=none,
            stat0=numpy.ones((len(x), 1)),
            stat1=x.numpy(),
        )

    en, te = stat(enrol, "e"), stat(test, "t")
    for scaling in (1.0, 0.5):
        ref = fast_PLDA_scoring(
            en,
            te,
            Ndx(models=en.modelset, testsegs=te.segset),
            plda.mean,
            plda.F,
            plda.Sigma,
            scaling_factor=scaling,
        ).scoremat
        matrix = torch.cat([enrol, test])
        e_idx = torch.arange(5).repeat_interleave(7)
        t_idx = 5 + torch.arange(7).repeat(5)
        ours = plda_pair_scores(
            plda, matrix, e_idx, t_idx, scaling_factor=scaling, chunk_size=6
        )
        numpy.testing.assert_allclose(ours.numpy(), ref.reshape(-1), rtol=1e-9)


def test_plda_needs_sessions():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="several utterances per speaker"):
        train_plda(x, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="N speaker labels"):
        train_plda(x, ["a", "a"])
    with pytest.raises(ValueError, match="more training embeddings than"):
        train_plda(torch.randn(4, 8), ["a", "a", "b", "b"])


@pytest.mark.parametrize("num", [None, 60])
def test_det_points_are_a_det_curve(num, tmp_path):
    """FAR never decreases and FRR never increases along the points; the
    rates are error_rates' (FAR = non-targets above, FRR = targets at or
    below the threshold); read_scores reads write_scores' files."""
    from speechbrain_kd.scoring import (
        det_points,
        error_rates,
        read_scores,
        write_scores,
    )

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(300, generator=g) + 1.5
    neg = torch.randn(900, generator=g)
    far, frr = det_points(pos, neg, num)
    assert (numpy.diff(far) >= 0).all() and (numpy.diff(frr) <= 0).all()
    assert far[0] < 0.01 and frr[-1] < 0.01 and frr[0] > 0.9
    if num is None:
        _, p_miss, p_fa = error_rates(pos, neg)
        assert sorted(zip(far, frr)) == sorted(
            zip(p_fa.tolist(), p_miss.tolist())
        )
    trials = [(1, f"e{i}", f"t{i}") for i in range(3)]
    trials += [(0, f"e{i}", f"u{i}") for i in range(2)]
    path = tmp_path / "scores.txt"
    write_scores(path, trials, torch.tensor([0.5, 0.25, -1.0, 0.75, 0.0]))
    enrol, labels, scores = read_scores(path)
    assert enrol == ["e0", "e1", "e2", "e0", "e1"]
    assert labels.tolist() == [1, 1, 1, 0, 0]
    assert scores.tolist() == [0.5, 0.25, -1.0, 0.75, 0.0]
    path.write_text("e0 t0 yes 0.5\n")
    with pytest.raises(ValueError, match="scores.txt:1"):
        read_scores(path)


def test_seed_intervals_cover_speakers_and_seeds():
    """Equal seeds: the two-level interval is the speaker bootstrap's;
    no speaker variation: it spans the per-seed differences; the t
    interval by hand (3 seeds, t(0.975, 2) = 4.303)."""
    from speechbrain_kd.scoring.seeds import (
        seed_speaker_interval,
        seed_t_interval,
    )

    rng = numpy.random.default_rng(0)
    reps = rng.normal(1.0, 0.2, 1000)
    a = {s: reps + 5.0 for s in (1, 2, 3)}
    b = {s: numpy.full(1000, 5.0) for s in (1, 2, 3)}
    seeds, low, high = seed_speaker_interval(a, b)
    want = numpy.percentile(reps, [2.5, 97.5])
    assert seeds == [1, 2, 3]
    assert (low, high) == pytest.approx(tuple(want), abs=1e-9)
    a = {1: numpy.full(1000, 1.0), 2: numpy.full(1000, 2.0)}
    b = {1: numpy.zeros(1000), 2: numpy.zeros(1000), 3: numpy.zeros(1000)}
    seeds, low, high = seed_speaker_interval(a, b)
    assert seeds == [1, 2] and (low, high) == (1.0, 2.0)
    seeds, mean, low, high = seed_t_interval(
        {1: 1.0, 2: 2.0, 3: 3.0}, {1: 0.0, 2: 0.0, 3: 0.0}
    )
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / 3**0.5, 1e-3)
    assert seed_t_interval({1: 1.0}, {1: 0.5})[1:] == (0.5, None, None)
    with pytest.raises(ValueError, match="no common training seed"):
        seed_t_interval({1: 1.0}, {2: 1.0})
