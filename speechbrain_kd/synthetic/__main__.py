"""Command line: ``python -m speechbrain_kd.synthetic FOLDER [options]``."""

import json
import logging
import sys
import time

from speechbrain_kd.synthetic.prepare import prepare_synthetic

DESCRIPTION = (
    "A zero-download synthetic multi-speaker corpus made with espeak-ng."
)


def main(argv=None):
    """Command line: ``python -m speechbrain_kd.synthetic FOLDER [options]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_kd.synthetic", description=DESCRIPTION
    )
    parser.add_argument("data_folder")
    parser.add_argument("--save_folder", default=None)
    parser.add_argument("--num_train_speakers", type=int, default=200)
    parser.add_argument("--num_test_speakers", type=int, default=40)
    parser.add_argument("--utts_per_speaker", type=int, default=12)
    parser.add_argument("--valid_utts_per_speaker", type=int, default=2)
    parser.add_argument("--num_trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num_workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    paths = prepare_synthetic(**vars(args))
    print(f"Done in {time.time() - start:.1f} s: {json.dumps(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
