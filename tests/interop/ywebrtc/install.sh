#!/usr/bin/env bash
# Installs y-webrtc, yjs and esbuild from the committed package-lock.json (npm ci) and bundles entry.js into
# dist/ywebrtc.js for the browser tests (tests/e2e/test_ywebrtc.py); bench/bench_ywebrtc.py runs the stock
# node_modules/y-webrtc/bin/server.js from here too. A no-op when both are up to date. `make test-deps` calls it.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install.sh: node and npm are needed for the y-webrtc tests (apt-get install nodejs npm)" >&2
    exit 1
fi
# The lock a finished install was made from is kept beside it: the same as the committed one, nothing to do.
if ! cmp -s package-lock.json node_modules/.installed-from-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.installed-from-lock
fi
if [ ! -s dist/ywebrtc.js ] || [ entry.js -nt dist/ywebrtc.js ] || [ package-lock.json -nt dist/ywebrtc.js ]; then
    node_modules/.bin/esbuild entry.js --bundle --format=iife --global-name=YW --platform=browser \
        --define:global=globalThis --log-level=warning --outfile=dist/ywebrtc.js
fi
