#!/usr/bin/env bash
# Starts the WebDMS app on the embedded default model: http://localhost:5173/
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
exec npx vite --host "${HOST:-localhost}" --port "${PORT:-5173}" "$@"
