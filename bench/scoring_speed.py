#!/usr/bin/env python3
"""Speed and agreement of score normalisation and PLDA against SpeechBrain.

    python bench/scoring_speed.py [--utts 145160] [--trials 579818]
        [--cohort 20000] [--top_k 1000] [--dim 192] [--sb_trials 300]
        [--sb_plda 2000]

Synthetic embeddings at VoxCeleb1-E scale by default (579,818 trials over
145,160 utterances). Back-ends compared on the same embeddings:

- AS-norm: ours (``score_trials(..., "as-norm")``: cohort statistics once
  per utterance, in chunks) against the per-trial loop of SpeechBrain's
  ``speaker_verification_cosine.py`` (``s-norm`` with ``cohort_size``),
  transcribed; SpeechBrain's loop runs on ``--sb_trials`` trials (values
  compared) and its time is extrapolated linearly to all trials.
- PLDA: ours (``plda_pair_scores``: the trials only) against SpeechBrain's
  ``fast_PLDA_scoring`` (every enrolment model against every test
  segment) on ``--sb_plda`` enrolment x ``--sb_plda`` test utterances
  (values compared); the size of its full score matrix for all
  utterances is printed.
"""

import argparse
import time

import numpy
import torch

from speechbrain_kd.scoring import (
    cohort_stats,
    normalize_scores,
    pair_cosine,
    plda_pair_scores,
    train_plda,
    trial_indices,
)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def sb_s_norm(enrol, test, train_cohort, cohort_size):
    """One trial of SpeechBrain's get_verification_scores (s-norm)."""
    similarity = torch.nn.CosineSimilarity(dim=-1, eps=1e-6)
    enrol_rep = enrol.repeat(train_cohort.shape[0], 1, 1)
    score_e_c = similarity(enrol_rep, train_cohort)
    score_e_c = torch.topk(score_e_c, k=cohort_size, dim=0)[0]
    mean_e_c, std_e_c = torch.mean(score_e_c, dim=0), torch.std(score_e_c, 0)
    test_rep = test.repeat(train_cohort.shape[0], 1, 1)
    score_t_c = similarity(test_rep, train_cohort)
    score_t_c = torch.topk(score_t_c, k=cohort_size, dim=0)[0]
    mean_t_c, std_t_c = torch.mean(score_t_c, dim=0), torch.std(score_t_c, 0)
    score = similarity(enrol, test)[0]
    return 0.5 * ((score - mean_e_c) / std_e_c + (score - mean_t_c) / std_t_c)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utts", type=int, default=145_160)
    parser.add_argument("--trials", type=int, default=579_818)
    parser.add_argument("--cohort", type=int, default=20_000)
    parser.add_argument("--top_k", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--sb_trials", type=int, default=300)
    parser.add_argument("--sb_plda", type=int, default=2000)
    parser.add_argument(
        "--only", choices=["as-norm", "plda"], help="run one back-end"
    )
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    speakers = torch.randn(args.utts // 20 + 1, args.dim, generator=g)
    spk_of = torch.arange(args.utts) // 20
    utt = speakers[spk_of] + 0.8 * torch.randn(args.utts, args.dim, generator=g)
    emb = {f"u{i}": utt[i] for i in range(args.utts)}
    e = torch.randint(0, args.utts, (args.trials,), generator=g)
    t = torch.randint(0, args.utts, (args.trials,), generator=g)
    trials = [(0, f"u{a}", f"u{b}") for a, b in zip(e.tolist(), t.tolist())]
    cohort = torch.randn(args.cohort, args.dim, generator=g)
    print(
        f"{args.trials} trials over {args.utts} utterances, dim {args.dim}, "
        f"cohort {args.cohort}, top_k {args.top_k} "
        f"({torch.get_num_threads()} threads)"
    )

    matrix, e_idx, t_idx, _ = trial_indices(emb, trials)
    if args.only != "plda":
        as_norm(args, matrix, e_idx, t_idx, cohort)
    if args.only != "as-norm":
        plda(args, utt, spk_of, matrix, e_idx, t_idx)


def as_norm(args, matrix, e_idx, t_idx, cohort):
    """Ours on every trial; SpeechBrain's loop on ``--sb_trials``."""
    start = time.perf_counter()
    raw = pair_cosine(matrix, e_idx, t_idx)
    mean, std = cohort_stats(matrix, cohort, top_k=args.top_k)
    ours = normalize_scores(raw, e_idx, t_idx, mean, std, "s-norm")
    t_ours = time.perf_counter() - start
    n = args.sb_trials
    train_cohort = cohort.unsqueeze(1)
    sb, t_sb = timed(
        lambda: torch.stack(
            [
                sb_s_norm(
                    matrix[e_idx[i]].view(1, -1),
                    matrix[t_idx[i]].view(1, -1),
                    train_cohort,
                    args.top_k,
                )
                for i in range(n)
            ]
        ).view(-1)
    )
    t_sb_all = t_sb * args.trials / n
    diff = float((sb - ours[:n]).abs().max())
    print(
        f"AS-norm: ours {t_ours:.1f} s for all trials | SpeechBrain's loop "
        f"{t_sb:.2f} s for {n} trials -> ~{t_sb_all / 3600:.1f} h for all "
        f"(ratio ~{t_sb_all / t_ours:.0f}x); max abs difference on the "
        f"{n} trials {diff:.2e}"
    )


def plda(args, utt, spk_of, matrix, e_idx, t_idx):
    """Ours on every trial; SpeechBrain's full matrix on a subset."""
    from speechbrain.processing.PLDA_LDA import (
        Ndx,
        StatObject_SB,
        fast_PLDA_scoring,
    )

    n_train = min(args.utts, 20_000)
    model, t_train = timed(
        train_plda,
        utt[:n_train],
        [str(int(s)) for s in spk_of[:n_train]],
        rank_f=100,
        nb_iter=10,
    )
    _, t_pairs = timed(plda_pair_scores, model, matrix, e_idx, t_idx)
    m = args.sb_plda
    en, te = utt[:m], utt[m : 2 * m]

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
            stat1=x.double().numpy(),
        )

    en_stat, te_stat = stat(en, "e"), stat(te, "t")
    ndx = Ndx(models=en_stat.modelset, testsegs=te_stat.segset)
    ref, t_sb_plda = timed(
        fast_PLDA_scoring,
        en_stat,
        te_stat,
        ndx,
        model.mean,
        model.F,
        model.Sigma,
    )
    pairs = plda_pair_scores(
        model,
        torch.cat([en, te]),
        torch.arange(m).repeat_interleave(m),
        m + torch.arange(m).repeat(m),
    )
    plda_diff = float(numpy.abs(pairs.numpy() - ref.scoremat.reshape(-1)).max())
    n_e, n_t = len(set(e_idx.tolist())), len(set(t_idx.tolist()))
    print(
        f"PLDA: trained on {n_train} embeddings in {t_train:.1f} s; ours "
        f"{t_pairs:.2f} s for all {args.trials} trials | SpeechBrain's "
        f"fast_PLDA_scoring {t_sb_plda:.2f} s for {m} x {m} = {m * m} pairs "
        f"(max abs difference {plda_diff:.2e}); for these trials it would "
        f"score {n_e} x {n_t} pairs, a float64 matrix of "
        f"{8 * n_e * n_t / 2**30:.0f} GiB"
    )


if __name__ == "__main__":
    main()
