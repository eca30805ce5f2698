# Multi-stage: build a venv with the project and its locked dependencies, ship only the venv.
# Python 3.11: the interpreter requirements.lock was compiled with (`make lock`).
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first (their layer is reused while only the code changes): exactly the pinned
# versions, every file checked against its hash, nothing resolved at build time.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
# pyproject names README.md as the readme and LICENSE as its licence file.
COPY pyproject.toml README.md LICENSE ./
COPY hooks/ hooks/
# The project alone, built with the locked setuptools (no build isolation fetching another).
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/python -c "import hooks"

FROM python:3.11-slim
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/route-reflector/calico-route-reflector-hooks
LABEL org.opencontainers.image.title="calico-route-reflector-hooks" \
      org.opencontainers.image.description="Metacontroller hooks that choose, label and peer Calico BGP route reflectors" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=builder /opt/venv /opt/venv
COPY LICENSE /licenses/LICENSE
# 65532 is the conventional "nonroot" user; the Deployment pins the same UID.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["python", "-m", "hooks", "serve", "--host", "0.0.0.0", "--port", "8080"]
