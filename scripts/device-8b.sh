#!/usr/bin/env bash
# The 8B-shape load and decode measurements of docs/benchmarks.md ("Real checkpoint load, 8B shape"), as
# run on the GPU machine (see /work/shared/gpu/README.md): there, with carry [".gpu", ".cache"],
#
#   source .gpu/setup.sh && bash scripts/device-8b.sh load      # checkpoint, cold q4 load + 4K/32K rows, convert, converted load
#   source .gpu/setup.sh && bash scripts/device-8b.sh more      # q8 load at 4K, the random-weight rows not measured before
#
# Everything goes to $OUT (logs, nvidia-smi samples, JSON) as it happens, so a run cut short still
# reports what it finished. The checkpoint is made there (scripts/make-random-checkpoint.py, 16.4 GB bf16
# in the Hugging Face layout with Qwen3-8B-DMS-8x's config) and never leaves the machine.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
CLI=${CLI:-.cache/dms.mjs}
# The largest free disk for the checkpoint (16.4 GB) and its q4 form (4.8 GB).
if [ -z "${CKROOT:-}" ]; then
  CKROOT=$(for d in /tmp /var/tmp "$HOME" "$PWD/.."; do [ -d "$d" ] && [ -w "$d" ] && echo "$(df -P --output=avail "$d" | tail -1) $d"; done | sort -rn | head -1 | cut -d' ' -f2)
fi
# SHAPE / CONTEXTS / CONTEXT1 / SHARD_MB only shrink it for a try-out on a small machine.
SHAPE=${SHAPE:-qwen3-8b-dms}
CONTEXTS=${CONTEXTS:-4096,32768}
CONTEXT1=${CONTEXT1:-4096}
CK=$CKROOT/webdms-8b/ckpt
Q4=$CKROOT/webdms-8b/ckpt-q4
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }
# Samples GPU memory every 200 ms into $OUT/gpumem-$1.csv while the rest of the arguments run; logs the max.
with_gpumem() {
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/gpumem-$name.csv" 2>/dev/null &
  local smi=$!
  local t0=$(date +%s.%N)
  "$@"
  local rc=$?
  local s=$(elapsed "$t0")
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  log "$name: rc $rc, $s s wall, GPU memory.used max $(sort -n "$OUT/gpumem-$name.csv" | tail -1) MiB (first sample: $(head -1 "$OUT/gpumem-$name.csv") MiB)"
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
  python3 scripts/make-random-checkpoint.py --out "$CK" --shape "$SHAPE" --shard-mb "${SHARD_MB:-4000}" 2>&1 | tee "$OUT/checkpoint.log"
  local rc=$?
  sync
  log "checkpoint: rc $rc, $(elapsed "$t0") s incl. sync, $(du -sb "$CK" | cut -f1) bytes, $(ls "$CK" | wc -l) files"
  ls -l "$CK" >> "$OUT/checkpoint.log"
  return $rc
}

case "${1:-load}" in
  load)
    machine
    checkpoint || exit 1
    drop_caches
    # Cold load: bf16 folder -> q4 streamed and quantized on the GPU, then decode at 4K and 32K, full and DMS.
    with_gpumem q4-cold bash -c "node $CLI bench --model $CK --weights q4 --context $CONTEXTS --kv full,dms 2>&1 | tee $OUT/bench-q4-cold.txt"
    # The converted (pre-quantized) form, then a load of it (cold if the cache can be dropped, and again warm).
    rm -rf "$Q4"
    with_gpumem convert bash -c "node $CLI convert --model $CK --weights q4 --out $Q4 --json 2>&1 | tee $OUT/convert-q4.txt"
    log "converted: $(du -sb "$Q4" | cut -f1) bytes, $(ls "$Q4" | wc -l) files"
    drop_caches
    with_gpumem q4-converted bash -c "node $CLI bench --model $Q4 --context $CONTEXT1 --kv dms --json > $OUT/bench-q4-converted.json 2> $OUT/bench-q4-converted.err"
    with_gpumem q4-converted-again bash -c "node $CLI bench --model $Q4 --context $CONTEXT1 --kv dms 2>&1 | tee $OUT/bench-q4-converted-again.txt"
    ;;
  more)
    machine
    checkpoint || exit 1
    # q8 from the bf16 folder (8.6 GiB of weights: over the default pre-flight budget of 8 GiB, hence --gpu-memory).
    with_gpumem q8 bash -c "node $CLI bench --model $CK --weights q8 --gpu-memory 120000 --context $CONTEXT1 --kv full,dms 2>&1 | tee $OUT/bench-q8.txt"
    # Random-weight rows of the existing table that were not measured, with the committed defaults.
    with_gpumem rand-8b-q8 bash -c "node $CLI bench --shape qwen3-8b --weights q8 --context 4096 --kv full 2>&1 | tee $OUT/rand-8b-q8.txt"
    with_gpumem rand-06b-q4 bash -c "node $CLI bench --shape qwen3-0.6b --weights q4 --context 32768 --kv full,dms 2>&1 | tee $OUT/rand-06b-q4.txt"
    with_gpumem rand-8b-q4 bash -c "node $CLI bench --shape qwen3-8b --weights q4 --context 4096,32768 --kv full,dms 2>&1 | tee $OUT/rand-8b-q4.txt"
    ;;
  *)
    echo "usage: bash scripts/device-8b.sh load|more" >&2
    exit 2
    ;;
esac
log "done"
