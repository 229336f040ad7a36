#!/usr/bin/env bash
# The WHIP/WHEP client the browser tests load (tests/e2e/test_whip_browser.py), from package-lock.json; a no-op
# when that version is installed already. Called by `make test-deps`.
set -euo pipefail
cd "$(dirname "$0")"
want=$(node -e 'console.log(require("./package-lock.json").packages["node_modules/whip-whep"].version)')
have=$(node -e 'try { console.log(require("./node_modules/whip-whep/package.json").version) } catch { console.log("") }')
if [ "$want" != "$have" ]; then
  npm ci --no-audit --no-fund --ignore-scripts
fi
