#!/usr/bin/env bash
# The one command for the lent GPU machine: install the carried wheels (.whl/, made by tools/device_wheels.sh),
# record the card and versions, run benchmarks/bench_gpu.py under a hard wall-clock limit, and leave everything in
# $OUT: env.txt (nvidia-smi, versions, disk), results.md (header + table, rewritten after each measurement),
# rows.json (the rows), bench.log (progress and the first runs' output tails).
#
#   device call: command `bash benchmarks/device_run.sh`, carry [".whl"], timeout_s 600
#   issue 18's memory matrix: command `BENCH_SCRIPT=bench_gpu_memory.py bash benchmarks/device_run.sh`, same carry
#   (.whl must then hold bitsandbytes==0.50.2 too, for the adamw8bit cells)
#
# The script ends within DEVICE_RUN_LIMIT seconds (default 520) whatever happens: bench_gpu.py gets what is left
# as its --budget (less a margin) and is killed by `timeout` if it still runs past that. Extra arguments go to
# bench_gpu.py. For a dry run on a machine without a GPU:
#   OUT=/tmp/out PYTHON=/path/to/python3 BENCH_DEVICE=cpu BENCH_SIZE=tiny bash benchmarks/device_run.sh --updates 5
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIMIT=${DEVICE_RUN_LIMIT:-520}
OUT=${OUT:-/tmp/xtts-device-out}
PY=${PYTHON:-python3}
SITE=${DEVICE_SITE:-/tmp/site}
SIZE=${BENCH_SIZE:-full}
DEVICE=${BENCH_DEVICE:-cuda}
SCRIPT=${BENCH_SCRIPT:-bench_gpu.py}   # bench_gpu_memory.py: the memory matrix of issue 18 (same options)
# The work space (~8 GB, plus up to ~12 GB of checkpoints while a run lasts) goes where the most space is free.
if [ -z "${XTTS_BENCH_CACHE:-}" ]; then
  best=/tmp best_free=0
  for dir in /tmp /var/tmp "$ROOT/.."; do
    free=$(df -P -B1G "$dir" 2>/dev/null | awk 'NR == 2 {print $4}')
    if [ -n "$free" ] && [ "$free" -gt "$best_free" ]; then best=$dir best_free=$free; fi
  done
  XTTS_BENCH_CACHE=$(cd "$best" && pwd)/xtts-bench
fi
export XTTS_BENCH_CACHE
mkdir -p "$OUT"
ENV_TXT=$OUT/env.txt

section() { echo "== $*" | tee -a "$ENV_TXT"; }

section "device_run.sh $(date -Is), limit ${LIMIT} s, size $SIZE, device $DEVICE"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee -a "$ENV_TXT"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$ENV_TXT"
else
  echo "nvidia-smi: not found" | tee -a "$ENV_TXT"
fi
section "host"
{ nproc; free -g; df -h /tmp /var/tmp "$ROOT"; echo "bench cache: $XTTS_BENCH_CACHE"; uname -r; "$PY" --version; } 2>&1 |
  tee -a "$ENV_TXT"

section "installing the carried wheels into $SITE"
shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "No wheels in .whl/: run tools/device_wheels.sh here first and name .whl in the call's carry." | tee -a "$ENV_TXT"
  exit 2
fi
if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "${wheels[@]}" 2>&1 | tee -a "$ENV_TXT"; then
  echo "pip install of the wheels failed" | tee -a "$ENV_TXT"
  exit 2
fi
# The repository first (a carried wheel must never shadow `benchmarks` or `utils`), then the carried packages, then
# the audio shim (benchmarks/device_shim/sitecustomize.py: torchaudio.load through soundfile; see its docstring).
export PYTHONPATH="$ROOT:$SITE:$ROOT/benchmarks/device_shim${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

section "versions (and every import the benchmark needs)"
if ! "$PY" - <<'EOF' 2>&1 | tee -a "$ENV_TXT"; then
import importlib.metadata as md, os, sys
import torch, torchaudio, transformers, soundfile, TTS, trainer
import TTS.tts.layers.xtts.trainer.gpt_trainer, TTS.tts.models.xtts
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
import utils.gpt_train, utils.training.trainer, benchmarks.bench_gpu, benchmarks.bench_gpu_memory
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "torchaudio", "transformers", "tokenizers", "huggingface_hub", "numpy", "numba", "scipy",
             "librosa", "soundfile", "coqui-tts", "coqui-tts-trainer", "coqpit-config", "tensorboard"):
    print(f"{name} {md.version(name)}")
print("cuda available:", torch.cuda.is_available(), "| torch CUDA", torch.version.cuda)
print("audio shim:", os.environ.get("XTTS_BENCH_AUDIO_SHIM", "off"), "| torchaudio.load from", torchaudio.load.__module__)
EOF
  echo "The import check failed: see above." | tee -a "$ENV_TXT"
  exit 3
fi

elapsed=$SECONDS
left=$((LIMIT - elapsed - 15))          # 15 s kept for the end of this script
budget=$((left - 20))                   # bench_gpu.py stops starting runs in time to write its results
section "$SCRIPT: budget ${budget} s, hard stop after ${left} s (${elapsed} s used so far)"
timeout -k 10 "$left" "$PY" "benchmarks/$SCRIPT" --size "$SIZE" --device "$DEVICE" --budget "$budget" \
  --results "$OUT/results.md" --json "$OUT/rows.json" "$@" 2>&1 | tee "$OUT/bench.log"
rc=${PIPESTATUS[0]}
rm -f "$OUT/results.md.tmp"
section "$SCRIPT exit code $rc after $((SECONDS - elapsed)) s; total $SECONDS s"
[ "$rc" = 124 ] || [ "$rc" = 137 ] && echo "(stopped by the time limit: results.md holds what was measured by then)"
[ -f "$OUT/results.md" ] && cat "$OUT/results.md"
ls -la "$OUT"
exit "$rc"
