#!/usr/bin/env bash
# The GPU benchmark, for a session that is lent a GPU machine (the `device` tool): one call of about 3 minutes.
#
#   bash bench/gpu.sh fetch     # here, once: the wheels the machine's image lacks -> .whl/ (git-ignored, ~8 MB)
#   device run: command "bash bench/gpu.sh run", carry [".whl"], timeout_s 480
#
# `run` installs the wheels into /tmp/site, then runs both benchmarks at GPU sizes and writes everything to
# $OUT/bench-gpu.txt (the device tool brings $OUT back). Add the rows to bench/README.md, naming the device.
# `PY=.venv/bin/python SMALL=1 WHEELS=none bash bench/gpu.sh run` runs the same steps at toy sizes on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; WHEELS=${WHEELS:-.whl}
case "${1:-run}" in
  fetch)
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" -r bench/gpu_wheels.txt ;;
  run)
    OUT=${OUT:-bench/out}; mkdir -p "$OUT"; log="$OUT/bench-gpu.txt"; : > "$log"
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
      export PYTHONPATH="/tmp/site:$PWD"
    else export PYTHONPATH="$PWD"; fi
    export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
    if [ -n "${SMALL:-}" ]; then tl=(--n 32 --size 32 --batch 8 --workers 2); dt=(--n 64 --workers 2 --cache-n 8 --cache-size 256)
    else tl=(--n 512 --size 256 --batch 32 --workers 8); dt=(--n 512 --workers 8); fi
    { date -u; command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
      echo "cpus: $(nproc)"; $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
    } 2>&1 | tee -a "$log"
    echo "== bench/train_loop.py ${tl[*]}" | tee -a "$log"
    timeout 240 $PY bench/train_loop.py "${tl[@]}" 2>&1 | grep -v -i warn | tee -a "$log"
    echo "== bench/data_throughput.py ${dt[*]}" | tee -a "$log"
    timeout 180 $PY bench/data_throughput.py "${dt[@]}" 2>&1 | grep -v -i warn | tee -a "$log" ;;
  *) echo "usage: bash bench/gpu.sh fetch | run" >&2; exit 2 ;;
esac
