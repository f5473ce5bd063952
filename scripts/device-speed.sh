#!/usr/bin/env bash
# The decode/prefill measurements of docs/benchmarks.md ("Speed, round two"), in one call on the GPU machine
# (../shared/gpu/README.md). Here: `bash ../shared/gpu/prepare.sh` (builds .gpu/) and `node scripts/dms.mjs --help`
# (builds .cache/dms.mjs); then `run` with carry [".gpu", ".cache/dms.mjs"] and the command
#
#   source .gpu/setup.sh && bash scripts/device-speed.sh            # all of it, ~8 minutes
#   source .gpu/setup.sh && STAGES="check main" bash scripts/device-speed.sh
#
# Stages (STAGES, in this order): check (`dms check`: the fast paths against the plain ones on this GPU, and the
# weight formats CHECK_WEIGHTS against the CPU),
# before (the main rows, and with kvq the K/V type rows, with CLI_BEFORE, a bundle of an older commit carried beside, for before/after on
# the same machine: e.g. `git worktree add /tmp/b <commit>`, build its bundle there, copy it to .cache/dms-before.mjs),
# main (Qwen3-8B shape q4, 4K and 32K, full and DMS, with the per-kernel profile and the time to first token
# of a 2K prompt), kvq (32K full and DMS with f16 and q8 K/V, KVQ), mv (decode matvec shapes in the step, MVS), gemv (the decode
# projections alone), decode (decode attention keys per step, and the
# general kernel, at 32K full, K/V f16 and q8: DECODE_KV), split (decode attention key splits, K/V types SPLIT_KV), gemm (prefill GEMM tiles, and the
# lane-split kernel), flush (early submits), small (Qwen3-0.6B shape). Everything goes to $OUT as it
# happens: summary.txt (the readable lines), results.jsonl (one JSON object per bench run, with its stage
# and arguments), log.txt (all output, stderr included).
set -uo pipefail
OUT=${OUT:-/tmp/out}
CLI=${CLI:-.cache/dms.mjs}
STAGES=${STAGES:-check main kvq mv gemv decode split gemm flush small}
LIMIT=${LIMIT:-90}
mkdir -p "$OUT"
T0=$(date +%s)
say() { echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/summary.txt"; }

# One bench run: its JSON line (with the stage and arguments added) to results.jsonl, a digest to summary.txt.
bench() {
  local stage=$1; shift
  say "$stage: bench $*"
  local json
  json=$(timeout "$LIMIT" node "${BENCH_CLI:-$CLI}" bench "$@" --json 2>>"$OUT/log.txt" | tail -1)
  if [ -z "$json" ]; then say "  (no result: failed or over ${LIMIT} s)"; return; fi
  node -e '
    const [stage, args, line] = process.argv.slice(1);
    const r = JSON.parse(line);
    r.stage = stage; r.args = args;
    require("fs").appendFileSync(process.env.OUT + "/results.jsonl", JSON.stringify(r) + "\n");
    const pct = (v) => v == null ? "n/a" : (100 * v / r.bandwidthGBps).toFixed(0) + "%";
    for (const w of r.rows) {
      console.log(`  ${w.shape} ${w.weights} ctx ${w.context} ${w.kv}: decode ${w.decodeTokensPerSecond.toFixed(1)} tok/s = ${(100 * w.fractionOfBound).toFixed(0)}% of bound ${w.boundTokensPerSecond.toFixed(0)}` +
        ` (serial ${w.serialTokensPerSecond == null ? "n/a" : w.serialTokensPerSecond.toFixed(1)})` +
        ` | ${w.dispatchesPerToken} dispatches, CPU ${w.recordMs.toFixed(2)} ms record, ${w.waitMs.toFixed(2)} ms wait, GPU ${w.gpuStepMs == null ? "n/a" : w.gpuStepMs.toFixed(2) + " ms"}/step` +
        ` | matvec ${pct(w.matvecGBps)}, attention ${pct(w.attentionGBps)} of copy | prefill ${w.prefillTokensPerSecond.toFixed(0)} tok/s`);
      if (w.kernels) console.log("    " + w.kernels.slice(0, 8).map((k) => `${k.label} x${k.dispatches} ${k.us.toFixed(0)}us`).join(" | "));
    }
    if (r.ttft) console.log(`  ttft ${r.ttft.prompt} tokens: ${r.ttft.ms.toFixed(0)} ms (${r.ttft.tokensPerSecond.toFixed(0)} tok/s); copy ${r.bandwidthGBps.toFixed(0)} GB/s; tuning ${JSON.stringify(r.tuning)}`);
  ' "$stage" "$*" "$json" | tee -a "$OUT/summary.txt"
}

has() { [[ " $STAGES " == *" $1 "* ]]; }

say "$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1)"
if has check; then
  say "check: the fast paths against the plain ones on this GPU"
  timeout 240 node "$CLI" check --weights ${CHECK_WEIGHTS:-q4,q8,f16} --kv-dtype ${CHECK_KV:-f16,q8,q4} 2>>"$OUT/log.txt" | tee -a "$OUT/summary.txt"
fi
# DECODES, SPLITS, GEMMS, FLUSHES: the values each sweep tries (see worker/bench/tuning.ts).
# B8 / CTX / SMALL only shrink it for a try-out here (e.g. B8="--shape tiny --weights q4" CTX=256 STAGES=main).
B8=${B8:-"--shape qwen3-8b --weights q4"}
CTX=${CTX:-4096,32768}
if has before && [ -f "${CLI_BEFORE:-}" ]; then
  BENCH_CLI=$CLI_BEFORE bench before $B8 --context $CTX --kv full,dms --steps 32
  BENCH_CLI=$CLI_BEFORE bench before ${SMALL:---shape qwen3-0.6b --weights q4} --context $CTX --kv full,dms --steps 32
  # With kvq, the K/V types too (the kvq rows below, with the older bundle).
  has kvq && BENCH_CLI=$CLI_BEFORE bench before $B8 --context ${CTX##*,} --kv full,dms --kv-dtype ${KVQ:-f16,q8} --steps 16 --ttft 0
fi
has main && bench main $B8 --context $CTX --kv full,dms --steps 32
# K/V storage types at 32K (docs/kv-cache.md): the same rows with f16 and q8 K/V.
has kvq && bench kvq $B8 --context ${CTX##*,} --kv full,dms --kv-dtype ${KVQ:-f16,q8} --steps 16 --ttft 0
if has mv; then
  for m in ${MVS:-8x64x1 8x32x1 4x64x1 16x64x1 8x128x1}; do bench mv $B8 --context ${CTX%%,*} --kv dms --steps 16 --ttft 0 --mv $m; done
fi
if has gemv; then
  say "gemv: the decode projections alone (GB/s of weights read)"
  timeout "$LIMIT" node "$CLI" bench --gemv $B8 2>>"$OUT/log.txt" | tee -a "$OUT/summary.txt"
fi
if has decode; then
  for kb in ${DECODES:-1 2 4 8 off}; do bench decode $B8 --context ${CTX##*,} --kv full --kv-dtype ${DECODE_KV:-f16,q8} --steps 16 --ttft 0 --decode $kb; done
fi
if has split; then
  for s in ${SPLITS:-32x2048 128x512}; do bench split $B8 --context $CTX --kv full --kv-dtype ${SPLIT_KV:-f16} --steps 16 --ttft 0 --decode-split $s; done
fi
if has gemm; then
  for g in ${GEMMS:-64x128x8x4 64x128x8x8 128x64x8x4 off}; do bench gemm $B8 --context ${CTX%%,*} --kv full --steps 4 --gemm $g; done
fi
if has flush; then
  for f in ${FLUSHES:-0 64}; do bench flush $B8 --context ${CTX%%,*} --kv dms --steps 32 --ttft 0 --flush $f; done
fi
has small && bench small ${SMALL:---shape qwen3-0.6b --weights q4} --context $CTX --kv full,dms --steps 32
say "done"
