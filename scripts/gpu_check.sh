#!/usr/bin/env bash
# The prepared GPU check (fetalbench/devtools/gpu_check.py): every method for a few steps at the
# paper profile, `fetalbench bench` at paper with peak memory, one pre-training stage and one
# fine-tuning run timed at paper and gpu, and the projected time of the paper and phantom suites;
# gpu_check.json and gpu_check.md in OUT_DIR. At most 8 minutes on one GPU.
#   scripts/gpu_check.sh OUT_DIR          on a GPU machine (a one-line error without CUDA)
#   scripts/gpu_check.sh --cpu OUT_DIR    the small CPU version (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" -m fetalbench.devtools.gpu_check "$@"
