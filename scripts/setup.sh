#!/usr/bin/env bash
# Installs what WebDMS needs on a Debian/Ubuntu machine: Chromium (browser tests and its SwiftShader
# WebGPU), Mesa 25's lavapipe from bookworm-backports (a faster Vulkan CPU adapter for Node's WebGPU),
# Debian's CPU PyTorch (the trainer's smoke test), and the npm packages. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need_apt+=(python3-torch python3-numpy)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need_apt[@]}"
fi

# Node WebGPU on lavapipe needs Mesa >= 23 (bookworm's 22 is rejected by Dawn): take it from backports.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.json ] && grep -q bookworm /etc/os-release 2>/dev/null; then
  uri=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  uri=${uri:-http://deb.debian.org/debian}
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    $SUDO tee /etc/apt/sources.list.d/webdms-backports.sources >/dev/null
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1 || echo "setup: lavapipe unavailable; Node tests use Chromium's SwiftShader"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
