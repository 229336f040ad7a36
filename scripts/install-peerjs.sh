#!/usr/bin/env bash
# Installs the JavaScript packages of tests/interop/peerjs (the peerjs client the Chromium tests serve to their
# pages, and the original `peer` server the benchmark runs with node), exactly as package-lock.json pins them.
# Idempotent: node_modules installed from the current lock file is left alone.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop/peerjs"
STAMP=node_modules/.installed-from-lock
if [ -f "$STAMP" ] && cmp -s package-lock.json "$STAMP"; then
  echo "peerjs: node_modules ready"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "peerjs: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$STAMP"
echo "peerjs: installed $(node -p 'require("./node_modules/peerjs/package.json").version') (client), $(node -p 'require("./node_modules/peer/package.json").version') (server)"
