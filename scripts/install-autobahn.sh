#!/usr/bin/env bash
# Builds the Python 2.7 environment that Autobahn|Testsuite's `wstest` needs (it does not run on Python 3).
# Route from shared/feasibility.md: pyenv's CPython 2.7.18, virtualenv<20.22, upstream's pinned dependencies.
# Idempotent: a finished environment is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
VENV27=.venv27

if [ -x "$VENV27/bin/wstest" ] && [ -f "$VENV27/.complete" ]; then
  echo "autobahn: $VENV27 ready"
  exit 0
fi

PY27=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python" ]; then
  PY27="$(pyenv root)/versions/2.7.18/bin/python"
elif command -v python2.7 >/dev/null 2>&1; then
  PY27="$(command -v python2.7)"
fi
if [ -z "$PY27" ]; then
  echo "autobahn: no CPython 2.7 found. Autobahn|Testsuite needs Python 2.7: install it with" >&2
  echo "  pyenv install 2.7.18   (or provide python2.7 on PATH) and run make test again." >&2
  exit 1
fi

rm -rf "$VENV27"
[ -x "$TOOLS/bin/virtualenv" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q 'virtualenv<20.22'; }
"$TOOLS/bin/virtualenv" -q -p "$PY27" "$VENV27"
# pip's exit status must not be lost in a pipe; its known-harmless noise is filtered from the log afterwards.
PIPLOG="$VENV27/pip-install.log"
if ! "$VENV27/bin/pip" install -q --disable-pip-version-check -r scripts/autobahn-requirements-py27.txt \
    >"$PIPLOG" 2>&1; then
  cat "$PIPLOG" >&2
  echo "autobahn: pip install into $VENV27 failed (log: $PIPLOG)" >&2
  exit 1
fi
grep -vE "DEPRECATION|(Location|Url) .* is ignored|requires setuptools==44.0.0|legacy dependency resolver" \
  "$PIPLOG" || true
"$VENV27/bin/wstest" --help >/dev/null
touch "$VENV27/.complete"
echo "autobahn: $VENV27 built"
