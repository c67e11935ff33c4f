#!/usr/bin/env bash
# Sets up the environment, lints, and runs the test suite (unit tests,
# doctests and a tiny end-to-end recipe run on ../shared/data).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/tools/setup_env.sh"
cd "$repo"
ruff check .
yamllint -s recipes hparams .ci 2>/dev/null || yamllint -s recipes hparams
python -m pytest "$@"
