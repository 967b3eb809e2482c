# train_act image: a LeRobot dataset mounted at /data/input becomes a trained ACT policy in /data/output.
#
# GPU host (PyTorch's Linux wheels from the package index carry CUDA; the host only needs the driver
# and the NVIDIA container toolkit):
#   docker build -t train_act:cuda .
#   docker run --gpus all --shm-size=8g -v /path/to/dataset:/data/input:ro -v /path/to/out:/data/output \
#       train_act:cuda --num_epochs 2000 --batch_size 64
#
# CI (no registry, no GPU, no access to download.pytorch.org): scripts/ci_container.sh builds this same
# file with a local Debian base, the CPU torch wheel from ./wheels and BACKBONE_WEIGHTS=none.
#
# Build arguments (all optional):
#   BASE_IMAGE        any Debian bookworm image; Python is Debian's python3 (3.11) in every case, so
#                     the CI build and the GPU build differ only in where the same base came from.
#   TORCH_VERSION     pinned torch (default: the package index's CUDA build). TORCH_INDEX_URL adds
#                     PyTorch's index for another CUDA build, e.g. https://download.pytorch.org/whl/cu128
#                     for an older driver (pick one that pytorch.org lists for this version). A local
#                     build of that version in ./wheels (CI: torch-2.13.0+cpu) wins over the index.
#   BACKBONE_WEIGHTS  imagenet (default): bake torchvision's ResNet18 ImageNet weights, SHA-256 checked;
#                     none: no pretrained weights in the image (it says so in a label and an env var).
#   VERSION, REVISION, SOURCE_URL: OCI labels.
# A CA bundle for an intercepting proxy comes in only as a build secret, never into a layer:
#   --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt

ARG BASE_IMAGE=debian:bookworm-slim
ARG BACKBONE_WEIGHTS=imagenet

# ---------------------------------------------------------------------------------------------------
# Optional local wheels. `wheels*` matches nothing on a normal checkout, and .dockerignore is always
# there, so the COPY never fails; the stage is only bind-mounted below, so no wheel lands in a layer
# of the final image.
FROM scratch AS local-wheels
COPY .dockerignore wheels* /

# ---------------------------------------------------------------------------------------------------
# Debian's python3 (3.11 in bookworm) and a CA store (the weights download; pip brings its own).
FROM ${BASE_IMAGE} AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------------
# torchvision's ResNet18 IMAGENET1K_V1 weights; torchvision names the file after the first 8 hex digits
# of its SHA-256, which we check in full. Plain Python: no curl, no torchvision.
FROM python AS weights
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG RESNET18_URL=https://download.pytorch.org/models/resnet18-f37072fd.pth
ARG RESNET18_SHA256=f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec
RUN --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export SSL_CERT_FILE=/run/secrets/pip_cert; fi; \
    mkdir -p /opt/act/weights \
    && python3 -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" \
        "$RESNET18_URL" /opt/act/weights/resnet18-f37072fd.pth \
    && echo "${RESNET18_SHA256}  /opt/act/weights/resnet18-f37072fd.pth" | sha256sum --check --strict

# ---------------------------------------------------------------------------------------------------
# One stage for the environment and the project: a builder stage would only save the few MB of
# python3-venv, and copying the ~1.5 GB venv between stages costs a second layer of that size.
FROM python AS runtime
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Build-time pip settings (ARG: in the environment of RUN, not of the image).
ARG PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120

# Heavy, rarely changing layer first so that source edits reuse it. torch's own dependencies are pinned
# too; the CUDA wheel pins its nvidia-* and triton dependencies exactly itself.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip_cert \
    --mount=type=bind,from=local-wheels,target=/wheels \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --no-cache-dir --find-links /wheels ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        "torch==${TORCH_VERSION}" \
        filelock==4.2.11 typing-extensions==4.16.0 setuptools==84.2.1 sympy==1.14.0 mpmath==1.3.0 \
        networkx==3.6.1 jinja2==3.1.6 markupsafe==3.0.3 fsspec==2026.9.0 \
        numpy==2.4.6 h5py==3.16.0 pyarrow==26.0.1 av==18.1.0 einops==0.8.2 tqdm==4.70.1 \
    && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# The Training Manager's web stack (`train-act-manager`, started by `docker run ... train_act:cuda manager`),
# every package pinned, in its own layer so the torch layer above stays cached.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --no-cache-dir \
        fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 pydantic==2.13.4 pydantic-core==2.46.4 \
        annotated-types==0.7.0 typing-inspection==0.4.2 annotated-doc==0.0.7 opentelemetry-api==1.45.2 \
        anyio==4.16.0 idna==3.13 click==8.4.0 h11==0.16.0

# The project itself: no dependency resolution here (all pinned above), no build isolation (which would
# fetch an unpinned setuptools). The CLI must import and answer --help, or the build fails here.
COPY pyproject.toml README.md train_lerobot_to_act.py /tmp/src/
COPY act /tmp/src/act
COPY lerobot_bridge /tmp/src/lerobot_bridge
COPY manager /tmp/src/manager
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/src \
    && pip check \
    && rm -rf /tmp/src \
    && train-act --help >/dev/null \
    && train-act-manager --help >/dev/null

# A fixed non-root user for the default case; any --user UID:GID works too, because nothing needs a
# passwd entry: HOME and the caches live in /tmp, USER is set for getpass (torch's compile caches).
# Only /data/output (and /tmp) are writable.
RUN groupadd --gid 1000 act \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin act \
    && mkdir -p /data/input /data/output \
    && chown act:act /data/output \
    && chmod 1777 /data/output
COPY --chmod=0755 entrypoint.sh /usr/local/bin/train_act_entrypoint

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=https://github.com/train-act/train_act
LABEL org.opencontainers.image.title="train_act" \
      org.opencontainers.image.description="Train an ACT (Action Chunking Transformer) policy from a LeRobot dataset; checkpoints load into upstream ACT." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    USER=act \
    LOGNAME=act \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch \
    ACT_INPUT_DIR=/data/input \
    ACT_OUTPUT_DIR=/data/output \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
WORKDIR /tmp
# The Training Manager (`docker run -p 8080:8080 ... train_act:cuda manager`); training does not listen.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/train_act_entrypoint"]

# ---------------------------------------------------------------------------------------------------
# The two variants; BACKBONE_WEIGHTS picks one as the final image (the other is never built).
FROM runtime AS image-none
LABEL io.train_act.backbone-weights="none (random init unless --backbone_weights PATH is given)"
ENV ACT_PRETRAINED_BACKBONE=none

FROM runtime AS image-imagenet
COPY --from=weights /opt/act/weights /opt/act/weights
LABEL io.train_act.backbone-weights="resnet18-f37072fd.pth (torchvision IMAGENET1K_V1, sha256 checked)"
ENV ACT_PRETRAINED_BACKBONE=imagenet \
    ACT_BACKBONE_WEIGHTS=/opt/act/weights/resnet18-f37072fd.pth

# hadolint ignore=DL3006
FROM image-${BACKBONE_WEIGHTS}
