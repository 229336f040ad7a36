#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, once: each is skipped when its command is already there.
# Runs as root (CI and the dev machines are root); elsewhere it uses sudo when available.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have chromium || need+=(chromium)
have turnserver || need+=(coturn)
have redis-server || need+=(redis-server)
have nginx || need+=(nginx-light)
have npm || need+=(nodejs npm)              # y-webrtc, yjs and esbuild for the y-webrtc tests (tests/interop/ywebrtc/)           # `nginx -t` checks the reverse-proxy example (deploy/nginx/)
# A Docker engine of the project's own (scripts/docker-engine.sh) builds and runs the image and the compose file;
# debootstrap makes the root of the stand-in base images (tests/docker/images.py).
have docker-compose || need+=(docker-compose)
have dockerd || need+=(docker.io)
have runc || need+=(runc)
have debootstrap || need+=(debootstrap)
have ip || need+=(iproute2)
have unshare || need+=(util-linux)
# The python3 on PATH makes the venvs (`make`): when it is Debian's, it needs python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
