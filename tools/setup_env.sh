#!/usr/bin/env bash
# Creates or refreshes the project's virtual environment (.venv) and
# activates it. Sourced by run_main.sh and run_tests.sh.
# PYTHON selects the interpreter (default: python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.installed"
constraints="$repo/tools/constraints.txt"  # the tested torch/torchaudio pair
want="$(cat "$repo/setup.cfg" "$repo/pyproject.toml" "$constraints" \
    | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing speechbrain_kd and its dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -c "$constraints" -e "$repo[dev]"
    echo "$want" > "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
