# `make run` starts the server; `make test` installs what the tests need and runs them all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8765

.PHONY: run test venv test-deps system-deps autobahn-env docker-images ywebrtc-deps whip-js peerjs-deps lint typecheck pytest bench clean

run: $(VENV)/.run-installed
	$(BIN)/signaling serve --host $(HOST) --port $(PORT)

venv: $(VENV)/.run-installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# requirements.lock pins the server's run-time packages (the Docker image installs exactly these): the venv too.
$(VENV)/.run-installed: pyproject.toml requirements.lock | $(VENV)/bin/python
	$(BIN)/pip install -q -c requirements.lock -e '.[fast,peer]'
	touch $@

$(VENV)/.test-installed: pyproject.toml requirements.lock | $(VENV)/bin/python
	$(BIN)/pip install -q -c requirements.lock -e '.[fast,numpy,peer,test,bench]'
	touch $(VENV)/.run-installed $@

# The images tests/docker/ runs: stand-ins for the registry's bases, then the project's image from its Dockerfile,
# built with the network by the project's own engine (scripts/docker-engine.sh); cached by content, so a second run
# only checks. The suite starts that engine again inside its loopback-only namespace.
docker-images: system-deps $(VENV)/.test-installed
	$(BIN)/python -m tests.docker.images

test-deps: system-deps $(VENV)/.test-installed autobahn-env docker-images ywebrtc-deps whip-js peerjs-deps

# y-webrtc, yjs and esbuild from tests/interop/ywebrtc/package-lock.json, and the page's bundle (a no-op when done).
ywebrtc-deps:
	bash tests/interop/ywebrtc/install.sh

system-deps:
	bash scripts/install-system-packages.sh

peerjs-deps: system-deps
	bash scripts/install-peerjs.sh

autobahn-env:
	bash scripts/install-autobahn.sh

# The npm WHIP/WHEP client the browser tests load (tests/interop/whip/), from its package-lock.json.
whip-js:
	bash tests/interop/whip/install.sh

# ruff, then the import contracts of pyproject.toml ([tool.importlinter]): imports only go down the layers.
lint: $(VENV)/.test-installed
	$(BIN)/ruff check signaling tests bench scripts
	$(BIN)/ruff format --check signaling tests bench scripts
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# The whole suite runs inside a fresh network namespace where only loopback exists, so no test
# (WebRTC ones above all) can reach or gather candidates on the machine's real interfaces.
pytest: $(VENV)/.test-installed
	unshare -n bash -c 'ip link set lo up && exec $(BIN)/python -m pytest $(PYTEST_ARGS)'

test: test-deps lint typecheck pytest

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

clean:
	bash scripts/docker-engine.sh stop
	rm -rf $(VENV) .venv27 .tools test-artifacts .mypy_cache .ruff_cache .pytest_cache
