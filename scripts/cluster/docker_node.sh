#!/usr/bin/env bash
# One `docker run` per node: the image's torchrun across NODES machines (c10d rendezvous on the
# first node's address). Run this on every node with the same arguments; DATA and OUT on shared
# storage mounted at the same path on every node.
#
#   NODES=2 HEAD=10.0.0.1 DATA=/shared/my_set OUT=/shared/runs/my_set bash scripts/cluster/docker_node.sh [CLI flags]
#
# --network host: NCCL and the rendezvous reach the other nodes directly (no port mapping);
# --ipc host / a large --shm-size: DataLoader workers and NCCL use shared memory.
# NCCL_SOCKET_IFNAME picks the interface the nodes share (ip -br addr shows the names);
# NCCL_IB_DISABLE=1 on hosts without InfiniBand.
# Two nodes on ONE host (a test): give each container its own --hostname, resolvable by the
# other, each to a different loopback address (--add-host NAME:127.0.0.N for both names):
# torchrun's rendezvous tells nodes apart by (hostname, pid), and two containers would both be
# (host, 7) and wait forever (scripts/ci_container.sh's 2-node stage does this).
set -euo pipefail
: "${NODES:?number of nodes}" "${HEAD:?address of the first node}" "${DATA:?dataset folder}" "${OUT:?output folder}"
image=${IMAGE:-train_act:cuda}
port=${PORT:-29500}
exec docker run --rm --gpus all --network host --ipc host --shm-size 16g \
    --ulimit memlock=-1 --ulimit stack=67108864 \
    -e NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-^lo,docker}" -e NCCL_DEBUG="${NCCL_DEBUG:-WARN}" \
    ${NCCL_IB_DISABLE:+-e NCCL_IB_DISABLE="$NCCL_IB_DISABLE"} \
    -v "$DATA:/data/input:ro" -v "$OUT:/data/output" \
    "$image" torchrun --nnodes "$NODES" --nproc_per_node gpu \
    --rdzv_backend c10d --rdzv_endpoint "$HEAD:$port" --rdzv_id "${RDZV_ID:-train_act}" \
    -m train_lerobot_to_act --input_dir /data/input --output_dir /data/output --gpus all "$@"
