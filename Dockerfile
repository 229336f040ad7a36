# syntax=docker/dockerfile:1
# The signaling server: `docker build -t signaling .`, then `docker run -p 8765:8765 signaling`.
# Configuration is only SIGNALING_* variables (README, "Running the server"); SIGTERM drains (1001) and exits.
#
# The base is pinned by version; for builds that must not move at all, pin its digest too:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# ---------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The pinned run-time packages first: this layer is reused until requirements.lock changes.
COPY requirements.lock ./
RUN python -m venv /opt/signaling && /opt/signaling/bin/pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY signaling ./signaling
# Optional extras of pyproject.toml, e.g. --build-arg EXTRAS=numpy; their own packages are not in the lock.
ARG EXTRAS=""
# The project alone (the lock holds every package it needs: pip check says so), the extras asked for, then pip and
# setuptools go: the server never installs anything.
RUN /opt/signaling/bin/pip install --no-cache-dir --no-deps . \
 && if [ -n "$EXTRAS" ]; then /opt/signaling/bin/pip install --no-cache-dir -c requirements.lock ".[$EXTRAS]"; fi \
 && /opt/signaling/bin/pip check \
 && /opt/signaling/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/signaling/bin/python -m compileall -q /opt/signaling

# ---------------------------------------------------------------------------------------------- run
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="signaling" \
      org.opencontainers.image.description="WebRTC signaling server (rooms, relay, resume; one node or a Redis cluster)" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 signaling \
 && useradd --system --uid 10001 --gid signaling --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin signaling
COPY --from=build /opt/signaling /opt/signaling
COPY web /opt/signaling/web
ENV PATH=/opt/signaling/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SIGNALING_HOST=0.0.0.0 \
    SIGNALING_PORT=8765 \
    SIGNALING_WEB_ROOT=/opt/signaling/web \
    SIGNALING_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["signaling", "health"]
ENTRYPOINT ["signaling", "serve"]
