#!/usr/bin/env python3
"""Speed and agreement of EER / minDCF against SpeechBrain's.

    python bench/eer_speed.py [--trials 580000] [--sb_trials 20000]

Scores are drawn from two Gaussians (target mean 2, non-target mean 0).
SpeechBrain's ``EER`` loops over every candidate threshold (O(N^2)) and its
``minDCF`` builds a thresholds x scores matrix, so they run on a subsample
of ``--sb_trials`` trials; ours runs on the same subsample (values compared)
and on the full ``--trials`` (VoxCeleb1-E/H scale). The ratio printed is
SpeechBrain's time / ours on the same scores.
"""

import argparse
import time

import torch
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_kd.scoring import compute_eer, compute_min_dcf


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def draw(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n // 2, generator=g) + 2.0, torch.randn(
        n // 2, generator=g
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=580_000)
    parser.add_argument("--sb_trials", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    compute_eer(*draw(100, 2))  # first-call overhead out of the timings
    compute_min_dcf(*draw(100, 2))
    pos, neg = draw(args.sb_trials, 0)
    (eer, _), t_eer = timed(compute_eer, pos, neg)
    (sb_eer, _), t_sb_eer = timed(EER, pos, neg)
    (dcf, _), t_dcf = timed(compute_min_dcf, pos, neg)
    (sb_dcf, _), t_sb_dcf = timed(minDCF, pos, neg)
    print(f"{args.sb_trials} trials (SpeechBrain and ours):")
    print(
        f"  EER    ours {eer:.6f} in {t_eer:.3f} s | SpeechBrain "
        f"{sb_eer:.6f} in {t_sb_eer:.2f} s | ratio {t_sb_eer / t_eer:.0f}x"
    )
    print(
        f"  minDCF ours {dcf:.6f} in {t_dcf:.3f} s | SpeechBrain "
        f"{sb_dcf:.6f} in {t_sb_dcf:.2f} s | ratio {t_sb_dcf / t_dcf:.0f}x"
    )
    print(f"  equal values: EER {eer == sb_eer}, minDCF {dcf == sb_dcf}")
    # SpeechBrain's EER compares every score with each of the ~2N candidate
    # thresholds: time grows as N^2; its minDCF copies the target (and
    # non-target) scores once per threshold: a ~2N x N/2 float matrix each.
    scale = (args.trials / args.sb_trials) ** 2
    print(
        f"  SpeechBrain at {args.trials} trials (extrapolated, N^2): EER "
        f"~{t_sb_eer * scale / 60:.0f} min; minDCF would allocate a "
        f"{2 * args.trials} x {args.trials // 2} float32 matrix "
        f"(~{4 * args.trials**2 / 2**40:.1f} TiB)"
    )

    pos, neg = draw(args.trials, 1)
    (eer, _), t_eer = timed(compute_eer, pos, neg)
    (dcf, _), t_dcf = timed(compute_min_dcf, pos, neg)
    print(
        f"{args.trials} trials (ours only): EER {eer:.5f} in {t_eer:.3f} s, "
        f"minDCF {dcf:.5f} in {t_dcf:.3f} s"
    )


if __name__ == "__main__":
    main()
