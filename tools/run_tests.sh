#!/usr/bin/env bash
# Sets up the environment, lints, and runs the test suite (unit tests,
# doctests and a tiny end-to-end recipe run on ../shared/data).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
# Tiny models, subprocesses and 2-rank torchrun runs: one thread each is
# faster than two threads fighting over 2 cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ruff check .
yamllint -s recipes hparams bench/rows.yaml
python -m pytest "$@"
