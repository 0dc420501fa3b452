#!/usr/bin/env bash
# The GPU benchmark, for a session that is lent a GPU machine (the `device` tool): one call of at most ~7 minutes.
#
#   bash bench/gpu.sh fetch     # here, once: the wheels the machine's image lacks -> .whl/ (git-ignored, ~8 MB)
#   device run: command "bash bench/gpu.sh run", carry [".whl"], timeout_s 540
#
# `run` installs the wheels into /tmp/site, then runs the benchmarks at GPU sizes, most important first, and writes
# everything to $OUT/bench-gpu.txt (the device tool brings $OUT back):
#   1. gpu_unet.py        Unet/resnet34 256 px, batch 64: fp32 eager, bf16, + channels_last, + torch.compile; images/s, MFU
#   2. train_loop.py      medseg's train (bare and with every default callback) against a plain loop
#   3. data_throughput.py medseg's loader against a naive one
#   4. gpu_unet.py --fit-only   the same four configurations through medseg.run.train (Trainer.fit), with the time left
# The whole run keeps to BUDGET seconds (default 420, wheel installation included): each step gets its own cap or
# the time left, whichever is less, and is skipped when under 30 s remain; a step that hits its limit is noted and
# the next one runs. Add the rows to bench/README.md, naming the device.
# `PY=.venv/bin/python SMALL=1 WHEELS=none bash bench/gpu.sh run` runs the same steps at toy sizes on a CPU machine
# (torch.compile skipped there: it takes minutes on a CPU); that only checks that the scripts work.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; WHEELS=${WHEELS:-.whl}; BUDGET=${BUDGET:-420}
case "${1:-run}" in
  fetch)
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" -r bench/gpu_wheels.txt ;;
  run)
    OUT=${OUT:-bench/out}; mkdir -p "$OUT"; log="$OUT/bench-gpu.txt"; : > "$log"
    SECONDS=0
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
      export PYTHONPATH="/tmp/site:$PWD"
    else export PYTHONPATH="$PWD"; fi
    export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
    if [ -n "${SMALL:-}" ]; then
      gu=(--size 64 --batch 2 --steps 2 --warmup 1 --no-compile); fit=(--size 64 --batch 2 --no-compile --fit-batches 2 --fit-epochs 2 --workers 2)
      tl=(--n 32 --size 32 --batch 8 --workers 2); dt=(--n 64 --workers 2 --cache-n 8 --cache-size 256)
    else
      gu=(--size 256 --batch 64 --steps 50 --warmup 5 --encoder resnet34); fit=(--size 256 --batch 64 --encoder resnet34 --fit-batches 8 --fit-epochs 3 --workers 8)
      tl=(--n 512 --size 256 --batch 32 --workers 8); dt=(--n 512 --workers 8); fi
    # bench CAP SCRIPT ARGS...: run one benchmark within min(CAP, time left), its output (warnings filtered) into the log
    bench() {
      local cap=$1 left=$(( BUDGET - SECONDS )); shift
      local t=$(( left < cap ? left : cap ))
      if (( t < 30 )); then echo "== $* skipped: ${left}s of the ${BUDGET}s budget left" | tee -a "$log"; return 0; fi
      echo "== $* (limit ${t}s, ${SECONDS}s into the run)" | tee -a "$log"
      local rc=0; timeout -k 10 "$t" $PY "$@" 2>&1 | { grep -v -i warn || true; } | tee -a "$log" || rc=$?
      if (( rc )); then echo "== exit status $rc$( (( rc == 124 )) && echo ": stopped at its ${t}s limit" )" | tee -a "$log"; fi
      return 0
    }
    { date -u; command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
      echo "cpus: $(nproc)"; $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
    } 2>&1 | tee -a "$log"
    bench 200 bench/gpu_unet.py "${gu[@]}"
    bench 180 bench/train_loop.py "${tl[@]}"
    bench 180 bench/data_throughput.py "${dt[@]}"
    bench 150 bench/gpu_unet.py --fit-only "${fit[@]}"
    echo "== done in ${SECONDS}s (budget ${BUDGET}s)" | tee -a "$log" ;;
  *) echo "usage: bash bench/gpu.sh fetch | run" >&2; exit 2 ;;
esac
