#!/usr/bin/env bash
# The one command for the lent GPU machine (device tool: run, carry [".gpu_carry"], timeout_s 600):
#
#     bash benchmarks/gpu/run_on_device.sh
#
# Installs the carried wheels into /tmp/site (no network there), puts src/ on PYTHONPATH, runs the SFT
# matrix within SFT_BUDGET_S seconds, then (when benchmarks/bench_detect.py exists and DETECT_S > 0) the
# detection throughput benchmark on the real Qwen2.5-VL-7B architecture. Everything goes under $OUT:
#   device.log     this script's output (install, GPU, the tables)
#   sft_gpu.json   per-arm results and ratios, written after every arm
#   sft_gpu.log    every benchmark process's output
#   detect.log, detect/...   the detection benchmark's output and results
# Settings (environment): CARRY (.gpu_carry), ARMS (default), SFT_BUDGET_S (370 s, or 490 s when the
# detection benchmark does not run), DETECT_S (120; 0 skips it), STEPS (10), WARMUP (2), PYTHON (python3),
# BENCH_ARGS (more bench_sft_gpu.py flags, e.g. for a CPU rehearsal of this script: --tiny --rows 2 ...),
# SITE (/tmp/site: where the wheels go), WORK (/tmp/jamspotter-sft-bench: checkpoints, ~17 GB per model).
# Build the carry first, on the CPU machine: benchmarks/gpu/prepare_carry.py.
set -uo pipefail
: "${OUT:?OUT is not set: this script runs on the device machine, which sets it}"
CARRY=${CARRY:-.gpu_carry}
ARMS=${ARMS:-default}
DETECT_S=${DETECT_S:-120}
if [ -f benchmarks/bench_detect.py ] && [ "$DETECT_S" -gt 0 ]; then SFT_BUDGET_S=${SFT_BUDGET_S:-370}
else SFT_BUDGET_S=${SFT_BUDGET_S:-490}; fi
PYTHON=${PYTHON:-python3}
BENCH_ARGS=${BENCH_ARGS:-}
SITE=${SITE:-/tmp/site}
WORK=${WORK:-/tmp/jamspotter-sft-bench}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
start=$SECONDS
echo "run_on_device: $(date -u +%FT%TZ) $(uname -m), $(nproc) CPUs"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv,noheader || true
df -h /tmp | tail -1
if [ ! -d "$CARRY/wheels" ]; then
  echo "run_on_device: $CARRY/wheels not found: build it with benchmarks/gpu/prepare_carry.py and carry it"
  exit 2
fi
CARRY=$(cd "$CARRY" && pwd)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
  "$CARRY"/wheels/*.whl || { echo "run_on_device: wheel install failed"; exit 2; }
echo "run_on_device: wheels installed in $((SECONDS - start)) s"
export PYTHONPATH="$SITE:$PWD/src" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=/tmp/hf \
  JAMSPOTTER_REFERENCE_DATA="$CARRY"
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
"$PYTHON" benchmarks/gpu/bench_sft_gpu.py --reference "$CARRY" --out "$OUT" --work "$WORK" \
  --arms "$ARMS" --budget-s "$SFT_BUDGET_S" --steps "$STEPS" --warmup "$WARMUP" $BENCH_ARGS
sft_rc=$?
echo "run_on_device: SFT matrix exit code $sft_rc after $((SECONDS - start)) s"
if [ -f benchmarks/bench_detect.py ] && [ "$DETECT_S" -gt 0 ]; then
  timeout "$DETECT_S" "$PYTHON" benchmarks/bench_detect.py --device cuda \
    --arch-config "$CARRY/qwen_configs/Qwen2.5-VL-7B-Instruct" --tokenizer "$CARRY/qwen2_5_vl_tokenizer" \
    --batches 1,4,16 --results-dir "$OUT/detect" \
    > "$OUT/detect.log" 2>&1
  echo "run_on_device: detection benchmark exit code $? (124: stopped at ${DETECT_S} s) after $((SECONDS - start)) s"
  tail -n 20 "$OUT/detect.log"
fi
echo "run_on_device: done in $((SECONDS - start)) s"
exit "$sft_rc"
