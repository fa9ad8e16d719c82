#!/usr/bin/env bash
# The GPU check in one call, from a checkout on a fresh GPU machine (docs/running_full.md):
#   bash benchmarks/gpu_check.sh [gpu_check.py options]      -> $OUT (else ./gpu_check_out)/gpu_check.{json,md}
# Uses the machine's python with torch ($PYTHON, else python3) and the package from src/ (nothing to install);
# wheels in .whl/ (e.g. diffusers, which the lent GPU machine's image lacks) are installed to a scratch dir first.
set -eo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/c2bridge-site .whl/*.whl
  export PYTHONPATH="/tmp/c2bridge-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py --out "${OUT:-gpu_check_out}" "$@"
