# spiral GPU image: torch 2.13 (CUDA 12 wheels), vLLM 0.32, DeepSpeed 0.19 (the `gpu` extra).
#   docker build -t spiral:gpu .
#   docker run --gpus all -v hf:/data/hf -v $PWD/runs:/runs spiral:gpu +exp=kuhn_paper
# Multi-GPU and multi-node runs go through launch/docker-compose.yml (torchrun in the container).
# The devel image carries nvcc: DeepSpeed compiles its CUDA ops on first use.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev python3-venv \
       build-essential ninja-build git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user owns the environment, the model cache and the runs.
RUN useradd --create-home --uid 1000 spiral \
    && mkdir -p /opt/venv /opt/spiral /data/hf /data/torch_extensions /runs \
    && chown -R spiral:spiral /opt/venv /opt/spiral /data /runs
USER spiral
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/spiral
COPY --chown=spiral:spiral pyproject.toml README.md ./
COPY --chown=spiral:spiral envs envs
COPY --chown=spiral:spiral spiral spiral
COPY --chown=spiral:spiral configs configs
# torch first (the CUDA build from PyPI), then spiral with vllm + deepspeed pinned by the extra
RUN pip install "torch==2.13.0" && pip install ".[gpu]"

# Model weights, compiled DeepSpeed ops and run directories live on volumes.
ENV HF_HOME=/data/hf \
    SPIRAL_HOME=/data/spiral \
    TORCH_EXTENSIONS_DIR=/data/torch_extensions
VOLUME ["/data", "/runs"]
WORKDIR /runs
ENTRYPOINT ["python", "-m", "spiral.launch"]
