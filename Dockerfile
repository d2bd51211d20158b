# syntax=docker/dockerfile:1
#
#   docker build -t magray .                                  # CPU (onnxruntime)
#   docker build -t magray:gpu --build-arg VARIANT=gpu .      # CUDA runtime (onnxruntime-gpu)
#   docker build --build-arg MODEL=all-MiniLM-L6-v2 -t magray:offline .   # model baked in
#
#   docker run -v magray-data:/data -v ./tokens.toml:/run/secrets/magray-tokens:ro \
#       -p 7077:7077 magray
#
# Nothing is tuned to the CPU of the machine that builds the image: hnswlib is built
# with HNSWLIB_NO_NATIVE=1 (its setup.py adds -march=native otherwise) and magray's own
# kernels choose their instruction set at run time.

ARG VARIANT=cpu
ARG PYTHON_VERSION=3.12

# ---- builder: compilers, and a wheel for everything the runtime installs --------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG VARIANT
ENV HNSWLIB_NO_NATIVE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's security updates replace pinned versions; the base image pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# magray, hnswlib (from source, without -march=native) and every dependency as wheels;
# the CPU variant swaps onnxruntime-gpu (what Linux x86_64 resolves to) for onnxruntime.
RUN python -m pip wheel --wheel-dir /wheels . \
    && if [ "$VARIANT" = "cpu" ]; then \
         ort="$(ls /wheels/onnxruntime_gpu-*.whl)" \
         && version="$(basename "$ort" | cut -d- -f2)" \
         && rm "$ort" \
         && python -m pip download --only-binary :all: --no-deps \
              --dest /wheels "onnxruntime==${version}"; \
       fi

# ---- runtimes: no compiler ----------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime-cpu

FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 AS runtime-gpu
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS runtime
ARG MODEL=""
COPY --from=builder /wheels /tmp/wheels
RUN python3 -m venv /opt/magray \
    && /opt/magray/bin/pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
# Models install as links into the Hugging Face cache at HF_HOME; mount a host's cache there
# to share the models it already holds.
ENV PATH=/opt/magray/bin:$PATH \
    MAGRAY_HOME=/data/store \
    MAGRAY_SERVER_ROOT=/data/namespaces \
    MAGRAY_MODELS_DIR=/opt/magray/models \
    HF_HOME=/opt/magray/huggingface
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin magray \
    && mkdir -p /data /opt/magray/models /opt/magray/huggingface \
    && chown magray /data /opt/magray/models /opt/magray/huggingface
USER 10001
# A model baked in for hosts without network (empty: downloaded on first use).
RUN if [ -n "$MODEL" ]; then magray models pull "$MODEL"; fi
VOLUME ["/data"]
EXPOSE 7077
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "-c", "import sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; r = g.HealthStub(grpc.insecure_channel('127.0.0.1:7077')).Check(h.HealthCheckRequest(service='magray.v1.Memory'), timeout=3); sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["magray"]
# Listening beyond loopback needs a tokens file: mount one at /run/secrets/magray-tokens.
CMD ["serve", "--listen", "0.0.0.0:7077", "--tokens", "/run/secrets/magray-tokens"]
