#!/usr/bin/env bash
# The benchmark page (bench.html) in headless Chromium on the GPU machine's NVIDIA GPU, the same rows in Node
# (Dawn) in the same call for the browser/Node ratio, and the ONNX Runtime Web peer; docs/benchmarks.md, "In a
# browser". Build first, here: `bash scripts/browser-gpu-build.sh` (.browser-gpu/; its header lists the calls).
#
#   bash scripts/device-browser.sh STEP...     STEP: stash | peer | unpack | run   (run from the project root)
#
#   stash   copy what this call carried (.browser-gpu/c*/) into $B (/tmp/webdms-bgpu), where the later steps find it
#   peer    the pages into $B/web; starts building the peer's random-weight q4 ONNX models in the background (the
#           kit's make_qwen3_onnx.py, one shape after another; a new session, so it outlives the call)
#   unpack  the headless shell binary from its three parts, and its libraries, into $B/rt
#   run     tries the kit's Chromium flag sets until the page's adapter is NVIDIA (else saves Chromium's log and
#           stops), then for each shape: bench.html in its module worker, then `dms bench` in Node, the same rows;
#           then the peer; writes $OUT/summary.txt, adapter.json, browser.json, node.json, ort.json, logs.txt,
#           chrome.log
#
# Environment (defaults for the GPU machine):
#   BENCH="qwen3-8b:4096,32768 qwen3-0.6b:512,4096"   shape:contexts of the WebDMS rows (q4, kv full,dms)
#   ARGS=""                      more bench parameters for both, e.g. "steps=2 prefill=8 ttft=32" (page: &k=v, CLI: --k v)
#   ORT="qwen3-0.6b:512,4096 qwen3-8b:4096"            shape:contexts of the peer (its model is built by the peer step)
#   ORTSTEPS=32  DEADLINE=560 (seconds from the script's start by which every run has ended; the call's limit is 600)
#   BENCH_TIMEOUT=240  NODE_TIMEOUT=200  ORT_TIMEOUT=150 (each run's own limit, cut to what is left before DEADLINE)
#   MATCH=nvidia (what the adapter must name)  ICD (Vulkan driver manifest)  PYTHON=python3
#   LOCAL=1   the check on a machine without the GPU: SwiftShader, no .gpu/setup.sh, node from PATH, e.g.
#             OUT=/tmp/bgout LOCAL=1 BENCH=tiny:64 ARGS="steps=2 prefill=8 ttft=32" ORT=tiny:16,64 \
#               bash scripts/device-browser.sh stash peer unpack run
# The calls on the GPU machine and what each carries: scripts/browser-gpu-build.sh (its header).
set -uo pipefail
C=.browser-gpu
B=${BGPU:-/tmp/webdms-bgpu}
OUT=${OUT:?set OUT (the device machine sets it)}
PY=${PYTHON:-python3}
BENCH=${BENCH:-qwen3-8b:4096,32768 qwen3-0.6b:512,4096}
ARGS=${ARGS:-}
ORT=${ORT-qwen3-0.6b:512,4096 qwen3-8b:4096}
ORTSTEPS=${ORTSTEPS:-32}
DEADLINE=${DEADLINE:-560}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}
NODE_TIMEOUT=${NODE_TIMEOUT:-200}
ORT_TIMEOUT=${ORT_TIMEOUT:-150}
if [ -n "${LOCAL:-}" ]; then MATCH=${MATCH:-swiftshader}; ICD=${ICD:-$B/rt/vk_swiftshader_icd.json}
else MATCH=${MATCH:-nvidia}; ICD=${ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}; fi
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
# left LIMIT: seconds a run may take (LIMIT, or less to end by DEADLINE); fails when under 20 are left.
left() { local l=$(( DEADLINE - $(el) )); [ $l -ge 20 ] || return 1; echo $(( l < $1 ? l : $1 )); }
say() { echo "[t+$(el)s] $*" | tee -a "$OUT/summary.txt"; }
mkdir -p "$B/in" "$OUT"

stash() {
  local n=0
  for d in "$C"/c*/; do [ -d "$d" ] && cp -r "$d". "$B/in/" && n=$((n + 1)); done
  echo "stash: $n folder(s) of $C copied to $B/in: $(ls "$B/in" | tr '\n' ' ')"
  [ $n -gt 0 ] || { echo "stash: nothing carried (carry the .browser-gpu/cN of this call)" >&2; return 1; }
}

unpack() {
  [ -f "$B/in/chs.xz.sha256" ] || { echo "unpack: $B/in lacks chs.xz.sha256 (call 3 carries it)" >&2; return 3; }
  local sum; sum=$(cat "$B"/in/chs.xz.[0-9] | sha256sum | awk '{print $1}')
  [ "$sum" = "$(cat "$B/in/chs.xz.sha256")" ] || { echo "unpack: the browser binary's parts ($(ls "$B"/in/chs.xz.[0-9] | tr '\n' ' ')) do not add up" >&2; return 3; }
  mkdir -p "$B/rt" && cat "$B"/in/chs.xz.[0-9] | xz -T0 -dc > "$B/rt/chromium-headless-shell" && chmod +x "$B/rt/chromium-headless-shell"
  [ -f "$B/in/rtx.tar.xz" ] || { echo "unpack: $B/in lacks rtx.tar.xz (call 3 carries it)" >&2; return 3; }
  tar -C "$B/rt" -xJf "$B/in/rtx.tar.xz"
  echo "unpack: $(ls -la "$B/rt/chromium-headless-shell"), $(ls "$B/rt/lib" | wc -l) libraries"
}

peer() {
  head -2 /etc/os-release 2>/dev/null; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  [ -d "$B/in/web" ] || { echo "peer: $B/in lacks web/ (call 2 carries it)" >&2; return 3; }
  rm -rf "$B/web" && cp -r "$B/in/web" "$B/web"
  xz -dc "$B/web/out/ortdist/ort-wasm-simd-threaded.asyncify.wasm.xz" > "$B/web/out/ortdist/ort-wasm-simd-threaded.asyncify.wasm"
  # The peer's models, one after another in the background (a new session: it outlives this call while the machine stays warm).
  local shapes; shapes=$(for s in $ORT; do echo "${s%%:*}"; done | awk '!seen[$0]++' | tr '\n' ' ')
  [ -n "$shapes" ] || return 0
  (cd "$B/web" && setsid nohup bash -c "for s in $shapes; do mkdir -p out/ort-\$s; echo \"== \$s \$(date +%T)\"; $PY make_qwen3_onnx.py out/ort-\$s/model.onnx --shape \$s --max-pos 8192 2>&1; done; echo \"== done \$(date +%T)\"" \
    > "$B/onnx-export.log" 2>&1 < /dev/null & echo $! > "$B/onnx-export.pid")
  echo "peer: building the peer's ONNX models in the background: $shapes(log $B/onnx-export.log)"
}

# drive PAGE OUTJSON TIMEOUT: bench.html or ort-bench.html in headless Chromium with $FLAGS, through the kit's drive.py
# (which serves $B/web/out with COOP/COEP, so the page is cross-origin isolated, and collects what it POSTs).
drive() {
  timeout $(( $3 + 15 )) env VK_ICD_FILENAMES="$ICDS" VK_DRIVER_FILES="$ICDS" "$PY" "$B/web/drive.py" --chrome "$B/rt/chrome" \
    --root "$B/web/out" --page "$1" --out "$2" --timeout "$3" --flags="$FLAGS" --log "$2.chrome.log" > "$2.txt" 2>&1
}

run() {
  [ -x "$B/rt/chromium-headless-shell" ] || { say "run: no $B/rt/chromium-headless-shell (unpack first, in a call moments before)"; return 3; }
  [ -d "$B/rt/lib" ] && [ -f "$B/in/dms.mjs" ] && [ -d "$B/web" ] || { say "run: $B lacks rt/lib, dms.mjs or web/ (calls 2 and 3 bring them)"; return 3; }
  local NODE_BUNDLE=$B/in/dms.mjs
  if [ -z "${LOCAL:-}" ]; then
    [ -f .gpu/setup.sh ] || { say "run: carry .gpu in this call"; return 3; }
    # shellcheck disable=SC1091
    source .gpu/setup.sh > "$B/gpu-setup.log" 2>&1    # Node, Dawn, the GL/Vulkan loaders; node_modules -> .gpu/node_modules
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  # The bundle leaves 'webgpu' external: run it from a folder whose node_modules resolves it.
  mkdir -p .cache && cp "$NODE_BUNDLE" .cache/dms-browser-run.mjs && NODE_BUNDLE=.cache/dms-browser-run.mjs
  say "WebDMS $(cat "$B/in/commit" 2>/dev/null | tr '\n' ' ')on $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); node $(node --version 2>&1)"
  # The browser alone gets the carried libraries (drive.py's Python and Node keep the machine's own).
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/rt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s/rt/chromium-headless-shell "$@"\n' "$B" "$B" > "$B/rt/chrome" && chmod +x "$B/rt/chrome"
  say "$("$B/rt/chrome" --version 2>&1 | tail -1); libraries still missing: $(LD_LIBRARY_PATH=$B/rt/lib ldd "$B/rt/chromium-headless-shell" | grep 'not found' | awk '{print $1}' | tr '\n' ' ')"
  # Precise GPU timestamps (Chromium otherwise has Dawn quantize them).
  local TS='--enable-webgpu-developer-features --enable-dawn-features=allow_unsafe_apis --disable-dawn-features=timestamp_quantization'
  local BASE='--enable-unsafe-webgpu --ignore-gpu-blocklist --disable-gpu-sandbox'
  local FOUND= i A
  for i in 1 2 3 4 5; do
    ICDS=$ICD
    case $i in   # the shared kit's flag sets (../shared/gpu/browser/scripts/run2.sh)
      1) FLAGS="$BASE --enable-features=Vulkan --use-angle=vulkan --disable-vulkan-surface";;
      2) FLAGS="$BASE --enable-features=Vulkan --use-vulkan=native --use-angle=vulkan --disable-vulkan-surface";;
      3) FLAGS="$BASE --use-webgpu-adapter=default";;
      4) FLAGS="$BASE --enable-features=Vulkan,VulkanFromANGLE,DefaultANGLEVulkan --use-gl=angle --use-angle=vulkan --disable-vulkan-surface --v=1";;
      5) FLAGS="$BASE --use-angle=swiftshader --enable-unsafe-swiftshader"; ICDS=$ICD:$B/rt/vk_swiftshader_icd.json;;
    esac
    FLAGS="$FLAGS $TS"
    drive 'bench.html?probe=1&report=1' "$B/probe$i.json" 30
    A=$("$PY" -c "import json,sys;d=json.load(open(sys.argv[1]));i=d.get('adapterInfo') or {};print(i.get('vendor'),i.get('architecture'),i.get('description'),'fallback' if i.get('isFallbackAdapter') else '',d.get('error') or '')" "$B/probe$i.json" 2>&1)
    say "probe $i [$FLAGS]: adapter: $A"
    if echo "$A" | grep -qi "$MATCH"; then FOUND=$i; break; fi
  done
  cp "$B/probe${FOUND:-1}.json" "$OUT/adapter.json"
  if [ -z "$FOUND" ]; then
    for i in 1 4; do echo "===== probe $i: $(head -c 300 "$B/probe$i.json.txt")"; tail -c 6000000 "$B/probe$i.json.chrome.log"; done > "$OUT/chrome.log" 2>&1
    grep -h -i -E 'vulkan|dawn|webgpu|gpu|icd|error' "$B/probe1.json.chrome.log" | grep -v dbus | head -40 | tee -a "$OUT/summary.txt"
    { for f in "$B"/probe[0-9].json.txt; do echo "===== $f"; cat "$f"; done; } > "$OUT/logs.txt"
    "$PY" -c "import glob,json,sys;json.dump({'probes':{f.split('/')[-1]:json.load(open(f)) for f in sorted(glob.glob(sys.argv[1]+'/probe[0-9].json'))}},open(sys.argv[2],'w'),indent=1)" "$B" "$OUT/browser.json"
    say "no $MATCH adapter in Chromium with any flag set: every probe's answer in browser.json, Chromium's log of probes 1 and 4 in chrome.log"
    return 4
  fi
  say "Chromium flags that gave the $MATCH adapter: $FLAGS"
  "$PY" -c "import json,sys;d=json.load(open(sys.argv[1]));print(json.dumps({k:d.get(k) for k in ('adapter','adapterInfo','features','userAgent')}))" "$OUT/adapter.json" >> "$OUT/summary.txt"
  local PQ= CQ= kv
  for kv in $ARGS; do PQ="$PQ&$kv"; CQ="$CQ --${kv%%=*} ${kv#*=}"; done
  local spec shape ctx t
  for spec in $BENCH; do
    shape=${spec%%:*}; ctx=${spec#*:}
    t=$(left "$BENCH_TIMEOUT") || { say "skipped $shape: too close to the ${DEADLINE}s deadline"; continue; }
    say "browser: bench.html in its module worker, $shape q4 ctx $ctx full,dms$PQ (limit ${t}s)"
    drive "bench.html?report=1&shape=$shape&weights=q4&context=$ctx&kv=full,dms$PQ" "$B/browser-$shape.json" "$t"
    # The page's progress as it came (rows included, also those of a run cut short), and drive.py's verdict.
    grep -h -E '^\[page|^result: .*"error"' "$B/browser-$shape.json.txt" | grep -v 'WebDMS bench in a module worker' | cut -c1-400 | sed 's/^/  /' | tee -a "$OUT/summary.txt"
    t=$(left "$NODE_TIMEOUT") || { say "skipped node $shape: too close to the ${DEADLINE}s deadline"; continue; }
    say "node: dms bench --shape $shape --weights q4 --context $ctx --kv full,dms$CQ (limit ${t}s)"
    # shellcheck disable=SC2086
    timeout "$t" node "$NODE_BUNDLE" bench --shape "$shape" --weights q4 --context "$ctx" --kv full,dms $CQ --json \
      > "$B/node-$shape.json" 2> "$B/node-$shape.err" || say "  node exited with $? ($(tail -c 300 "$B/node-$shape.err"))"
  done
  if [ -n "$ORT" ]; then
    local pid; pid=$(cat "$B/onnx-export.pid" 2>/dev/null)
    for spec in $ORT; do
      shape=${spec%%:*}; ctx=${spec#*:}
      local m=$B/web/out/ort-$shape/model.onnx
      while [ ! -f "$m.json" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && left 60 >/dev/null; do sleep 2; done
      if [ ! -f "$m.json" ]; then say "peer $shape: no ONNX model ($(tail -3 "$B/onnx-export.log" 2>/dev/null | tr '\n' ' '))"; continue; fi
      t=$(left "$ORT_TIMEOUT") || { say "skipped peer $shape: too close to the ${DEADLINE}s deadline"; continue; }
      say "peer: onnxruntime-web 1.31.1 WebGPU, $shape-shaped q4 ONNX ($(cut -c1-200 "$m.json")), ctx $ctx, $ORTSTEPS steps (limit ${t}s)"
      drive "ort-bench.html?model=ort-$shape/model.onnx&context=$ctx&steps=$ORTSTEPS" "$B/ort-$shape.json" "$t"
      grep -h -E '^\[page|^result: .*"error"' "$B/ort-$shape.json.txt" | grep -v 'session in' | cut -c1-400 | sed 's/^/  /' | tee -a "$OUT/summary.txt"
    done
  fi
  summarize
  say "done"
}

# The result files and the browser/Node table.
summarize() {
  "$PY" - "$B" "$OUT" "$BENCH" "$ORT" <<'PY'
import glob, json, os, sys
B, OUT, bench, ort = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
def load(path):
    try:
        with open(path) as f: return json.load(f)
    except Exception as e:
        err = open(path.replace('.json', '.err')).read()[-2000:] if os.path.exists(path.replace('.json', '.err')) else ''
        return {'error': f'{type(e).__name__}: {e}', 'stderr': err} if os.path.exists(path) else None
shapes = [s.split(':')[0] for s in bench]
browser = {s: load(f'{B}/browser-{s}.json') for s in shapes}
browser['probes'] = {os.path.basename(p): load(p) for p in sorted(glob.glob(f'{B}/probe[0-9].json'))}
node = {s: load(f'{B}/node-{s}.json') for s in shapes}
peer = {s.split(':')[0]: load(f"{B}/ort-{s.split(':')[0]}.json") for s in ort}
try: peer['export_log'] = open(f'{B}/onnx-export.log').read()[-20000:]
except OSError: pass
for name, obj in (('browser', browser), ('node', node), ('ort', peer)):
    with open(f'{OUT}/{name}.json', 'w') as f: json.dump(obj, f, indent=1)
lines = ['', 'browser (bench.html, module worker) vs node (dms bench), same rows; decode tok/s (one step ahead, as the app decodes; serial:',
         'one step at a time), GPU ms/step (timestamps), CPU record / wait ms per step',
         f"{'shape':<11} {'ctx':>6} {'kv':<4} {'K/V':<4} | {'browser':>8} {'node':>8} {'b/n':>5} | {'serial b':>8} {'serial n':>8} | {'GPU b':>7} {'GPU n':>7} | {'rec/wait b':>13} {'rec/wait n':>13} | {'prefill b':>9} {'prefill n':>9}"]
f1 = lambda v, d=1: '-' if v is None else f'{v:.{d}f}'
for s in shapes:
    b, n = browser.get(s) or {}, node.get(s) or {}
    if b.get('error'): lines.append(f'{s}: browser error: {b["error"][:300]}')
    if n.get('error'): lines.append(f'{s}: node error: {n["error"][:300]} {n.get("stderr", "")[-300:]}')
    nrows = {(r['context'], r['kv'], r['kvDtype']): r for r in n.get('rows') or []}
    for r in b.get('rows') or []:
        m = nrows.get((r['context'], r['kv'], r['kvDtype']), {})
        ratio = r['decodeTokensPerSecond'] / m['decodeTokensPerSecond'] if m else None
        lines.append(f"{s:<11} {r['context']:>6} {r['kv']:<4} {r.get('kvDtype', ''):<4} | {f1(r['decodeTokensPerSecond']):>8} {f1(m.get('decodeTokensPerSecond')):>8} {f1(ratio, 2):>5} | "
                     f"{f1(r.get('serialTokensPerSecond')):>8} {f1(m.get('serialTokensPerSecond')):>8} | "
                     f"{f1(r['gpuStepMs'], 2):>7} {f1(m.get('gpuStepMs'), 2):>7} | {f1(r['recordMs'], 2) + '/' + f1(r['waitMs'], 2):>13} "
                     f"{(f1(m.get('recordMs'), 2) + '/' + f1(m.get('waitMs'), 2)) if m else '-':>13} | {f1(r['prefillTokensPerSecond'], 0):>9} {f1(m.get('prefillTokensPerSecond'), 0):>9}")
    bt, nt = (b.get('ttft') or {}), (n.get('ttft') or {})
    if bt or nt: lines.append(f"{s:<11} time to first token, {bt.get('prompt') or nt.get('prompt')}-token prompt: browser {f1(bt.get('ms'), 0)} ms, node {f1(nt.get('ms'), 0)} ms")
    if b.get('bandwidthGBps') or n.get('bandwidthGBps'): lines.append(f"{s:<11} copy bandwidth: browser {f1(b.get('bandwidthGBps'))} GB/s, node {f1(n.get('bandwidthGBps'))} GB/s; browser tuning {json.dumps(b.get('tuning'))}, node {json.dumps(n.get('tuning'))}")
lines.append('')
lines.append('peer: onnxruntime-web 1.31.1 WebGPU (K/V f32 on the GPU), decode tok/s')
for s, p in peer.items():
    if s == 'export_log': continue
    if not p: lines.append(f'{s}: not run'); continue
    if p.get('error'): lines.append(f"{s}: error: {p['error'][:300]}"); continue
    for r in p.get('rows') or []:
        lines.append(f"{s:<11} {r['context']:>6}      | {r['decodeTokensPerSecond']:.1f} tok/s ({r['msPerToken']:.2f} ms/token, {r['steps']} steps, KV on {r['kvLocation']}); session {p.get('loadMs', 0):.0f} ms")
with open(f'{OUT}/summary.txt', 'a') as f: f.write('\n'.join(lines) + '\n')
print('\n'.join(lines))
PY
  { for f in "$B"/probe[0-9].json.txt "$B"/browser-*.json.txt "$B"/node-*.err "$B"/ort-*.json.txt "$B/onnx-export.log" "$B/gpu-setup.log"; do
      [ -f "$f" ] && { echo "===== $f"; tail -c 2000000 "$f"; }; done; } > "$OUT/logs.txt"
  { for f in "$B"/browser-*.json.chrome.log "$B"/ort-*.json.chrome.log; do
      [ -f "$f" ] && { echo "===== $f"; grep -v -E 'dbus|Fontconfig' "$f" | tail -c 5000000; }; done; } > "$OUT/chrome.log"
}

for step in "$@"; do
  case $step in
    stash|peer|unpack|run) $step || exit $?;;
    *) echo "unknown step $step (stash, peer, unpack, run)" >&2; exit 2;;
  esac
done
