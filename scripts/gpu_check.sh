#!/usr/bin/env bash
# One call that checks the GPU path on a machine with an NVIDIA GPU:
#
#   1. installs the package with its test extras (a venv that can see a system
#      PyTorch; otherwise pip brings the registry's default, CUDA-enabled, torch);
#   2. records the machine (nvidia-smi, torch, CUDA);
#   3. runs the CUDA tests on the real GPU (tests/test_cuda.py: autocast, a REAL
#      out-of-memory fallback, CUDA = CPU; plus the other tests that skip without CUDA);
#   4. `attnseg bench --device cuda --json ...`;
#   5. a 1-epoch training smoke run of a zoo recipe (recipes/unet.nuclei.json) on
#      the DSB 96² nuclei data (--data DIR or $ATTNSEG_DATA, else runs/data/nuclei/train
#      or data/DSB2018_96 when present), else on a generated toy set;
#
# and writes OUT/gpu_check.json (every step: command, exit code, seconds, key
# results) and OUT/gpu_check.log (everything printed). Sized for < 8 minutes
# on an H100/H200 (install included when the wheels come from a nearby mirror).
#
#   scripts/gpu_check.sh [--out DIR] [--device cuda|cuda:N|cpu] [--python PY]
#                        [--no-install] [--data DIR] [--dry-run]
#
# --dry-run runs every step at toy size (no install, the current Python, quick
# bench, tiny training) so that the script itself is tested on a CPU-only
# machine: `scripts/gpu_check.sh --device cpu --dry-run` (tests/test_benchmark.py
# does). Needs no internet beyond the package registry. Exit code: 0 when every
# step passed, 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUT=gpu_check_out
DEVICE=cuda
PYTHON=${PYTHON:-python3}
INSTALL=1
DRY=0
DATA=${ATTNSEG_DATA:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --data) DATA=$2; shift 2 ;;
    --dry-run) DRY=1; INSTALL=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
STEPS="$OUT/steps.tsv"
: > "$LOG"
: > "$STEPS"

say() { echo "[gpu_check] $*" | tee -a "$LOG"; }

# step NAME TIMEOUT_S COMMAND...: run, log, record name, rc, seconds, command
step() {
  local name=$1 limit=$2; shift 2
  say "── $name: $*"
  local start rc
  start=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  local command="$*"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( ($(date +%s%N) - start) / 1000000 ))" \
    "${command//$'\n'/ }" >> "$STEPS"
  say "   $name: exit $rc"
  return $rc
}

# 1. install ------------------------------------------------------------------
if [ "$INSTALL" = 1 ]; then
  VENV=${VENV:-.venv-gpu}
  # --system-site-packages: reuse a CUDA PyTorch the machine already has
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
  step install 420 "$VENV/bin/python" -m pip install -q -e ".[testing]"
  PYTHON="$ROOT/$VENV/bin/python"
fi
ATTNSEG=("$PYTHON" -c "import sys; from napari_attnseg.cli import main; sys.exit(main())")

# 2. machine -----------------------------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >>"$LOG" 2>&1
step machine 60 "$PYTHON" scripts/gpu_check_helpers.py machine --device "$DEVICE"

# 3. CUDA tests ----------------------------------------------------------------
CUDA_TESTS=(tests/test_cuda.py tests/test_losses.py::test_cuda_matches_cpu tests/test_inference.py)
[ "$DRY" = 1 ] && CUDA_TESTS=(tests/test_cuda.py)
step cuda_tests 300 "$PYTHON" -m pytest -q -p no:cacheprovider -rs \
  --junitxml="$OUT/cuda_tests.xml" "${CUDA_TESTS[@]}"

# 4. benchmark -----------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  BENCH=(--quick --threads 1 --arch unet --reference monai.BasicUNet --sizes 32 --batch-sizes 1
         --variants fp32 auto --train-batch 1 --train-patch-size 32 --no-finetune --no-e2e
         --large-size 96 --tile-size 64 --no-window-predictor)
else
  BENCH=(--batch-sizes 1 8 32 --variants fp32 auto auto+cl --train-batch 8)
fi
step bench 360 "${ATTNSEG[@]}" bench --device "$DEVICE" --quiet "${BENCH[@]}" \
  --json "$OUT/bench.json"

# 5. training smoke run ----------------------------------------------------------
if [ -z "$DATA" ]; then
  for candidate in runs/data/nuclei/train data/DSB2018_96; do
    if [ -d "$candidate/images" ] && [ -d "$candidate/masks" ]; then DATA=$candidate; break; fi
  done
fi
TRAIN=(--config recipes/unet.nuclei.json --epochs 1)
if [ "$DRY" = 1 ] || [ -z "$DATA" ]; then
  DATA="$OUT/toy"
  if [ "$DRY" = 1 ]; then N=4; SIZE=48; else N=64; SIZE=96; fi
  "$PYTHON" scripts/gpu_check_helpers.py toy-data "$DATA" --count "$N" --size "$SIZE" >>"$LOG" 2>&1
  [ "$DRY" = 1 ] && TRAIN+=(--patch-size 32 --batch-size 2)
fi
say "training data: $DATA"
step train_smoke 300 "${ATTNSEG[@]}" train "${TRAIN[@]}" --images "$DATA/images" \
  --masks "$DATA/masks" --out "$OUT/train/unet.nuclei.smoke.safetensors" --device "$DEVICE" \
  --quiet

# summary ------------------------------------------------------------------------
"$PYTHON" scripts/gpu_check_helpers.py summary "$OUT" --device "$DEVICE" --dry-run "$DRY" \
  --data "$DATA" | tee -a "$LOG"
status=$?
say "wrote $OUT/gpu_check.json and $LOG"
exit $status
