#!/usr/bin/env bash
# The 8B-shape load and decode measurements of docs/benchmarks.md ("Real checkpoint load, 8B shape"), as
# run on the GPU machine (see ../shared/gpu/README.md): there, with carry [".gpu", ".cache"],
#
#   source .gpu/setup.sh && bash scripts/device-8b.sh load      # checkpoint, cold q4 load + 4K/32K rows, convert, converted load
#   source .gpu/setup.sh && bash scripts/device-8b.sh more      # q8 load at 4K, random-weight rows, 64-step rows
#
# Everything goes to $OUT (steps.log, log.txt, gpu.csv, machine.txt, two JSON files) as it happens, so a
# run cut short still reports what it finished. The checkpoint is made there (scripts/make-random-checkpoint.py, 16.4 GB bf16
# in the Hugging Face layout with Qwen3-8B-DMS-8x's config) and never leaves the machine.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
CLI=${CLI:-.cache/dms.mjs}
# The largest free disk for the checkpoint (16.4 GB) and its q4 form (4.8 GB).
if [ -z "${CKROOT:-}" ]; then
  CKROOT=$(for d in /tmp /var/tmp "$HOME" "$PWD/.."; do [ -d "$d" ] && [ -w "$d" ] && echo "$(df --output=avail "$d" | tail -1 | tr -d ' ') $d"; done | sort -rn | head -1 | cut -d' ' -f2)
fi
# SHAPE / CONTEXTS / CONTEXT1 / SHARD_MB only shrink it for a try-out on a small machine.
SHAPE=${SHAPE:-qwen3-8b-dms}
CONTEXTS=${CONTEXTS:-4096,32768}
CONTEXT1=${CONTEXT1:-4096}
CK=$CKROOT/webdms-8b/ckpt
Q4=$CKROOT/webdms-8b/ckpt-q4
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }
# Runs "$@" with its output appended to $OUT/log.txt (and shown) while nvidia-smi samples the GPU every 200 ms
# into $OUT/gpu.csv (phase, time, memory.used MiB, SM and memory clocks MHz, pstate, power W); logs the max memory.
phase() {
  local name=$1; shift
  echo "=== $name: $*" | tee -a "$OUT/log.txt"
  nvidia-smi --query-gpu=timestamp,memory.used,clocks.sm,clocks.mem,pstate,power.draw --format=csv,noheader,nounits -lms 200 2>/dev/null \
    | sed -u "s/^/$name, /" >> "$OUT/gpu.csv" &
  local smi=$!
  local t0=$(date +%s.%N)
  "$@" 2>&1 | grep -v '^Warning: maxDynamic' | tee -a "$OUT/log.txt"
  local rc=${PIPESTATUS[0]}
  local s=$(elapsed "$t0")
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  log "$name: rc $rc, $s s wall, GPU memory.used max $(grep "^$name, " "$OUT/gpu.csv" | cut -d, -f3 | sort -n | tail -1) MiB"
  return $rc
}
drop_caches() {
  sync
  if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then log "page cache dropped"; else log "page cache NOT dropped (no permission): reads may come from the page cache"; fi
}

machine() {
  log "commit ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo '?')}; cli $CLI; shape $SHAPE; checkpoint dir $CKROOT"
  { nvidia-smi; nproc; free -g; df -h "$CKROOT"; node --version; python3 --version
    python3 -c 'import numpy; print("numpy", numpy.__version__)'; python3 -c 'import torch; print("torch", torch.__version__)'; } > "$OUT/machine.txt" 2>&1
}

checkpoint() {
  if [ -f "$CK/model.safetensors.index.json" ]; then log "checkpoint already there: $CK"; return 0; fi
  rm -rf "$CK"
  local t0=$(date +%s.%N)
  python3 scripts/make-random-checkpoint.py --out "$CK" --shape "$SHAPE" --shard-mb "${SHARD_MB:-4000}" 2>&1 | tee -a "$OUT/log.txt"
  local rc=${PIPESTATUS[0]}
  sync
  log "checkpoint: rc $rc, $(elapsed "$t0") s incl. sync, $(du -sb "$CK" | cut -f1) bytes, $(ls "$CK" | wc -l) files"
  ls -l "$CK" >> "$OUT/log.txt"
  return $rc
}

case "${1:-load}" in
  load)
    machine
    checkpoint || exit 1
    drop_caches
    # Cold load: bf16 folder -> q4 streamed and quantized on the GPU, then decode at 4K and 32K, full and DMS.
    phase q4-cold node "$CLI" bench --model "$CK" --weights q4 --context "$CONTEXTS" --kv full,dms
    # The converted (pre-quantized) form, then loads of it: after dropping the page cache, and again.
    rm -rf "$Q4"
    phase convert bash -c "node $CLI convert --model $CK --weights q4 --out $Q4 --json | tee $OUT/convert-q4.json"
    log "converted: $(du -sb "$Q4" | cut -f1) bytes, $(ls "$Q4" | wc -l) files"
    drop_caches
    phase q4-converted bash -c "node $CLI bench --model $Q4 --context $CONTEXT1 --kv full,dms --json | tee $OUT/bench-q4-converted.json"
    phase q4-converted-again node "$CLI" bench --model "$Q4" --context "$CONTEXT1" --kv full,dms
    ;;
  more)
    machine
    checkpoint || exit 1
    # q8 from the bf16 folder (9.2 GB of weights: over the default pre-flight budget of 8 GiB, hence --gpu-memory).
    phase q8 node "$CLI" bench --model "$CK" --weights q8 --gpu-memory 120000 --context "$CONTEXT1" --kv full,dms
    # Random weights of the same shape in the same session, and the rows of the table not measured before.
    phase rand-8b-q4 node "$CLI" bench --shape qwen3-8b --weights q4 --context 4096,32768 --kv full,dms
    phase rand-8b-q8 node "$CLI" bench --shape qwen3-8b --weights q8 --context 4096 --kv full,dms
    phase rand-06b-q4 node "$CLI" bench --shape qwen3-0.6b --weights q4 --context 32768 --kv full,dms
    # 64 decode steps instead of 16 (the CPU side of a step varies from run to run), loaded and random weights.
    phase q4-steps64 node "$CLI" bench --model "$CK" --weights q4 --context "$CONTEXTS" --kv full,dms --steps 64
    phase rand-8b-q4-steps64 node "$CLI" bench --shape qwen3-8b --weights q4 --context 4096,32768 --kv full,dms --steps 64
    ;;
  *)
    echo "usage: bash scripts/device-8b.sh load|more" >&2
    exit 2
    ;;
esac
log "done"
