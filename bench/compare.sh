#!/usr/bin/env bash
# Every issue-12 target in one table (bench/compare.py: its docstring says what it runs).
#   bench/compare.sh [--reps 3] [--connections 10000] [--peers-results DIR] [--soak-minutes 12] [--skip peers,json,chat,memory,churn]
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHON="$PY"
exec "$PY" "$HERE/bench/compare.py" "$@"
