#!/usr/bin/env python3
"""The fixed ECAPA width whose FLOPs match a pruned learned-width student.

Reads ``pruning.json`` (``recipes/MiniSpeakers/prune_student.py``), builds
the fixed-width student of ``hparams/students/ecapa.yaml`` (channels C, C,
C, C, 3C; attention 128; 128-d embedding) for every C that is a multiple
of the Res2Net scale (8), counts its MACs with ``torch.utils.flop_counter``
on the same number of frames as ``macs_pruned_counted``, and prints the C
with the nearest count (ties: the smaller C):

    python bench/matched_width.py RUN/pruning.json    # prints e.g. 48
"""

import argparse
import json
import sys

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_kd.model_size import count_macs


def fixed_macs(channels, frames, n_mels=80, emb_dim=128):
    """Counted MACs of the fixed-width ECAPA student on ``frames`` frames.

    Example
    -------
    >>> fixed_macs(16, 100) < fixed_macs(24, 100)
    True
    """
    model = ECAPA_TDNN(
        n_mels,
        channels=[channels] * 4 + [3 * channels],
        kernel_sizes=[5, 3, 3, 3, 1],
        dilations=[1, 2, 3, 4, 1],
        attention_channels=128,
        lin_neurons=emb_dim,
    ).eval()
    with torch.no_grad():
        return count_macs(model, torch.randn(1, frames, n_mels))


def matched_width(target_macs, frames, widths=range(8, 257, 8)):
    """``(C, MACs)`` of the width in ``widths`` nearest to ``target_macs``."""
    best = None
    for c in widths:
        macs = fixed_macs(c, frames)
        if best is None or abs(macs - target_macs) < abs(best[1] - target_macs):
            best = (c, macs)
        if macs > target_macs:
            break  # MACs grow with C
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pruning_json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    with open(args.pruning_json) as f:
        facts = json.load(f)
    for key in ("macs_pruned_counted", "frames"):
        if key not in facts:
            raise KeyError(f"{args.pruning_json}: no '{key}'")
    target = facts["macs_pruned_counted"]
    c, macs = matched_width(target, facts["frames"])
    if args.verbose:
        print(
            f"pruned {target / 1e6:.1f} M MACs -> fixed C={c} "
            f"({macs / 1e6:.1f} M MACs, {facts['frames']} frames)",
            file=sys.stderr,
        )
    print(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
