#!/usr/bin/env bash
# Builds .browser-gpu/ (ignored): what scripts/device-browser.sh needs on the GPU machine to run the benchmark
# page (bench.html) in headless Chromium on the GPU, the same rows in Node (Dawn), and the ONNX Runtime Web
# peer. Reuses the shared kit ../shared/gpu/browser/ (read-only; it does not travel): its page driver
# (web/drive.py), the peer's page (web/pages/ort-bench.*) and model builder (web/make_qwen3_onnx.py), and its
# way of carrying Debian's chromium-headless-shell with the libraries the GPU machine lacks.
# Run from the project root after `npm ci`, with apt (chromium installed: its libraries are what is carried)
# and npm (onnxruntime-web@1.31.1). ~7 min on 2 cores the first time (xz -9 of the 220 MB browser binary).
#
# Then, on the GPU machine, four calls back to back (files under /tmp/webdms-bgpu there last only while the
# machine stays warm, ~30 s after a call; the tree that travels, ~35 MB, leaves ~30 MiB per call for carried paths):
#   1 carry [".browser-gpu/c1"]   bash scripts/device-browser.sh stash                browser binary, part 1 (29 MB)
#   2 carry [".browser-gpu/c2"]   bash scripts/device-browser.sh stash peer           part 2 + pages (27 MB); starts the peer's ONNX models
#   3 carry [".browser-gpu/c3"]   bash scripts/device-browser.sh stash unpack         part 3 + libraries + CLI bundle (26 MB)
#   4 carry [".gpu"]              bash scripts/device-browser.sh run                  Node + Dawn (31 MB); the runs, ~8 min
# The script ends by printing what each call carries and fails if one would pass the 64 MiB limit.
set -euo pipefail
PROJ=$(pwd)
[ -f package.json ] && [ -d node_modules/vite ] || { echo "run from the project root after npm ci" >&2; exit 1; }
KIT=${KIT:-$PROJ/../shared/gpu/browser}
[ -f "$KIT/web/drive.py" ] || { echo "the shared kit is not at $KIT" >&2; exit 1; }
D=$PROJ/.browser-gpu
W=${WORK:-/tmp/webdms-browser-gpu-work}   # downloads kept between builds
ORT_VERSION=1.31.1
P1=${P1:-29000000} P2=${P2:-22000000}   # bytes of the browser binary's xz in calls 1 and 2 (the rest goes in call 3)
rm -rf "$D" && mkdir -p "$D"/c1 "$D"/c2/web/out/ortdist "$D"/c3 "$W"

# 1. The benchmark page: the project's Vite build, bench.html and its assets (not the default model).
npx vite build --outDir "$W/vite" --emptyOutDir --logLevel error
cp "$W/vite/bench.html" "$D/c2/web/out/" && cp -r "$W/vite/assets" "$D/c2/web/out/"
grep -q 'assets/bench-' "$D/c2/web/out/bench.html" || { echo "the build's bench.html does not load its script" >&2; exit 1; }

# 2. The kit's driver, the peer's page and model builder.
cp "$KIT/web/drive.py" "$KIT/web/make_qwen3_onnx.py" "$D/c2/web/"
cp "$KIT/web/pages/ort-bench.html" "$KIT/web/pages/ort-bench.js" "$D/c2/web/out/"

# 3. ONNX Runtime Web's WebGPU build (the one Transformers.js imports) for the peer.
mkdir -p "$W/ort" && (cd "$W/ort" && { [ "$(node -p "require('./node_modules/onnxruntime-web/package.json').version" 2>/dev/null)" = $ORT_VERSION ] \
  || { [ -f package.json ] || npm init -y >/dev/null; npm i onnxruntime-web@$ORT_VERSION --no-audit --no-fund --silent; }; })
ORTD=$W/ort/node_modules/onnxruntime-web/dist
cp "$ORTD/ort.webgpu.min.mjs" "$ORTD/ort-wasm-simd-threaded.asyncify.mjs" "$D/c2/web/out/ortdist/"
xz -9 -T2 -c "$ORTD/ort-wasm-simd-threaded.asyncify.wasm" > "$D/c2/web/out/ortdist/ort-wasm-simd-threaded.asyncify.wasm.xz"

# 4. Debian's chromium-headless-shell (same version as the installed chromium), xz'd and split over calls 1-3.
cd "$W"
ls chromium-headless-shell_*.deb >/dev/null 2>&1 || apt-get download chromium-headless-shell
rm -rf x && dpkg -x chromium-headless-shell_*.deb x
CHS=x/usr/lib/chromium/chromium-headless-shell
[ -f chs.xz ] && [ chs.xz -nt chromium-headless-shell_*.deb ] || xz -9 -T2 -c $CHS > chs.xz
dd if=chs.xz of="$D/c1/chs.xz.0" bs=1M iflag=count_bytes count=$P1 status=none
dd if=chs.xz of="$D/c2/chs.xz.1" bs=1M iflag=skip_bytes,count_bytes skip=$P1 count=$P2 status=none
dd if=chs.xz of="$D/c3/chs.xz.2" bs=1M iflag=skip_bytes skip=$((P1 + P2)) status=none
sha256sum chs.xz | awk '{print $1}' > "$D/c3/chs.xz.sha256"

# 5. Its shared libraries (all but glibc, libstdc++, libgcc), NSS modules, resources, SwiftShader (LOCAL runs and
#    the last flag set). The GL/Vulkan loaders come from .gpu/debs (scripts/device-browser.sh sources .gpu/setup.sh).
rm -rf pack && mkdir -p pack/lib
ldd $CHS | awk '{print $1, $3}' \
  | grep -v -E '^(libc\.so|libm\.so|/lib64/ld-linux|libpthread|libdl|librt|libgcc_s|libstdc|linux-vdso)' | awk 'NF == 2 && $2 ~ /^\// {print $2}' \
  | while read -r p; do cp -L "$p" pack/lib/; done
for f in libsoftokn3.so libfreeblpriv3.so libfreebl3.so libnssckbi.so; do cp -L /usr/lib/x86_64-linux-gnu/$f pack/lib/; done
cp x/usr/lib/chromium/*.pak pack/ 2>/dev/null || true
for f in icudtl.dat v8_context_snapshot.bin snapshot_blob.bin libvulkan.so.1 libvk_swiftshader.so vk_swiftshader_icd.json; do
  [ -f x/usr/lib/chromium/$f ] && cp x/usr/lib/chromium/$f pack/ || cp /usr/lib/chromium/$f pack/
done
tar -C pack -cf - . | xz -9 -T2 > "$D/c3/rtx.tar.xz"
cd "$PROJ"

# 6. Node + Dawn (../shared/gpu kit, .gpu/) and the CLI bundle, for the Node rows of the same call.
bash "$KIT/../prepare.sh" >/dev/null
node scripts/dms.mjs --help >/dev/null
cp .cache/dms.mjs "$D/c3/"
{ git rev-parse --short HEAD; git diff --quiet HEAD || echo "+ uncommitted changes"; } > "$D/c3/commit"

# What each call carries; each must stay under 64 MiB with the tree that travels (tracked and untracked, not ignored).
# (`|| true`: du fails on tracked files moved aside, such as the default model, and still prints the total of the rest.)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1 || true)
over=0
for c in 1 2 3 4; do
  carried=$([ $c = 4 ] && du -sb .gpu | cut -f1 || du -sb "$D/c$c" | cut -f1)
  n=$((carried + tree))
  awk -v c=$c -v a=$carried -v t=$tree 'BEGIN { printf "call %d: carries %5.1f MB + tree %5.1f MB = %5.1f MiB of 64\n", c, a / 1e6, t / 1e6, (a + t) / 1048576 }'
  if [ $n -ge $((64 * 1048576 - 512 * 1024)) ]; then
    over=1
    if [ $c = 4 ]; then echo "  call 4 would pass the limit: move public/models/webdms-default/model.safetensors (30.7 MB of the tree, not needed there) aside for the calls" >&2
    else echo "  call $c would pass the limit: move bytes between calls (P1, P2)" >&2; fi
  fi
done
exit $over
