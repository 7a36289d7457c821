# syntax=docker/dockerfile:1
# One image for both containers of the OnCallM pod: `oncallm operator` and `oncallm webhook`.
#
#   docker build -t oncallm:dev .
#
# Two stages: the builder turns the package and every dependency into wheels (compilers
# and build tools stay there); the runtime installs only those wheels. No Go toolchain
# either way: the local control plane (`oncallm controlplane`) is a development tool and is
# not used in a cluster.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, so editing the code reuses the cached dependency wheels.
COPY pyproject.toml README.md ./
RUN mkdir -p operator/oncallm && touch operator/oncallm/__init__.py \
    && pip wheel --wheel-dir /wheels . \
    && rm /wheels/oncallm-*.whl
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="OnCallM" \
      org.opencontainers.image.description="Root-cause analysis for Kubernetes alerts" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
# The wheels are bind-mounted, not copied, so they add nothing to the image's layers.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels oncallm \
    && oncallm --help > /dev/null
# 65532: the conventional "nonroot" user of distroless images; the Deployment runs as it
# with a read-only root file system and an emptyDir on /tmp. It needs a passwd entry: kopf
# names the operator after getpass.getuser(), which raises KeyError for a uid it cannot look up.
RUN groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin nonroot
USER 65532:65532
# 8080: webhook, web view, /metrics (webhook container); 8081: kopf's /healthz (operator).
EXPOSE 8080 8081
ENTRYPOINT ["oncallm"]
CMD ["--help"]
