#!/usr/bin/env bash
# Entry point of the train_act image. It fails fast, with the fix, on the two mistakes every first run
# makes (dataset not mounted where expected, output folder not writable by the container user), says
# which GPUs it sees, then `exec`s the training CLI so that the CLI is PID 1 and receives SIGTERM/SIGINT
# itself (preemption must be able to save a checkpoint).
#
# Environment (also for use outside Docker):
#   ACT_INPUT_DIR   dataset folder        (default /data/input)
#   ACT_OUTPUT_DIR  output folder         (default /data/output)
#   ACT_CLI         training command      (default train-act; split on spaces, e.g. "python3 train_lerobot_to_act.py")
set -euo pipefail

input_dir=${ACT_INPUT_DIR:-/data/input}
output_dir=${ACT_OUTPUT_DIR:-/data/output}
read -r -a cli <<<"${ACT_CLI:-train-act}"

log() { printf '[train_act] %s\n' "$*" >&2; }

# die MESSAGE [HINT...]: the error, one indented line per hint, exit 2 (the project's bad-input code).
die() {
    printf '[train_act] error: %s\n' "$1" >&2
    shift
    local hint
    for hint in "$@"; do printf '[train_act]   %s\n' "$hint" >&2; done
    exit 2
}

usage() {
    cat <<EOF
train_act: train an ACT (Action Chunking Transformer) policy from a LeRobot dataset.

  docker run --gpus all --shm-size=8g \\
      -v /path/to/dataset:${input_dir}:ro -v /path/to/output:${output_dir} \\
      train_act:cuda [TRAINING ARGUMENTS]

Input   ${input_dir}: a LeRobot dataset (v2.0, v2.1 or v3.0: the folder that holds meta/info.json),
        an Innate skill folder (metadata.json, data/episode_*.h5) or a folder of ACT episode_*.hdf5.
Output  ${output_dir}: checkpoints/<run_name>/{policy_best.ckpt, policy_last.ckpt, dataset_stats.pkl}
        and manifest.json. Must be writable by the container user: the image runs as uid 1000;
        add --user "\$(id -u):\$(id -g)" to write as yourself.
GPUs    --gpus all (or --gpus '"device=0,1"'); with --num_workers > 0 give the data loader shared
        memory: --shm-size=8g or --ipc=host.
Manager docker run -p 8080:8080 -v DATA:${input_dir} -v OUT:${output_dir} train_act:cuda manager
        starts the Training Manager web app on 0.0.0.0:8080 (a token is printed; open the URL shown).
Other   a first argument that does not start with '-' runs as a command instead of training,
        e.g. 'python -m act.policy --run_dir ...' or 'python -m lerobot_bridge IN OUT'.
Env     ACT_INPUT_DIR, ACT_OUTPUT_DIR move the two folders (outside Docker).

Training arguments:
EOF
}

# A folder the CLI can read: LeRobot (meta/info.json), Innate skill (metadata.json; the recorder also
# writes dataset_metadata.json) or plain ACT HDF5 episodes at the top level or under data/.
is_dataset() {
    local dir=$1 pattern
    for pattern in meta/info.json metadata.json dataset_metadata.json; do
        [[ -f "$dir/$pattern" ]] && return 0
    done
    for pattern in '*.hdf5' '*.h5' 'data/*.hdf5' 'data/*.h5'; do
        compgen -G "$dir/$pattern" >/dev/null && return 0
    done
    return 1
}

check_input() {
    is_dataset "$input_dir" && return 0
    local hints=("Mount the dataset folder that contains meta/info.json: -v /path/to/dataset:${input_dir}:ro")
    local nested
    for nested in "$input_dir"/*/meta/info.json; do
        [[ -f "$nested" ]] || continue
        hints+=("Found ${nested#"$input_dir"/} one level down: mount $(dirname "$(dirname "$nested")") itself,"
            "or pass --input_dir $(dirname "$(dirname "$nested")").")
        break
    done
    hints+=("(Also accepted: an Innate skill folder with metadata.json, or a folder of ACT episode_*.hdf5.)")
    if [[ -d "$input_dir" ]]; then
        die "no dataset in ${input_dir}: ${input_dir}/meta/info.json not found" "${hints[@]}"
    fi
    die "no dataset: ${input_dir} does not exist (${input_dir}/meta/info.json not found)" "${hints[@]}"
}

check_output() {
    local uid gid who fix probe
    uid=$(id -u)
    gid=$(id -g)
    who="uid ${uid} gid ${gid}"
    fix="Fix: mount a folder writable by ${who} (on the host: chown ${uid}:${gid} /path/to/output), or run as its owner with --user \"\$(id -u):\$(id -g)\"; do not mount it :ro."
    mkdir -p -- "$output_dir" 2>/dev/null || die "output folder ${output_dir} does not exist and cannot be created by ${who}" \
        "Mount a writable folder: -v /path/to/output:${output_dir}" "$fix"
    # A real write, not `test -w`: read-only mounts, ACLs and SELinux labels (add :z) show up only here.
    probe=$(mktemp "${output_dir}/.train_act_write_test.XXXXXX" 2>/dev/null) \
        || die "output folder ${output_dir} is not writable by ${who}" "$fix"
    rm -f -- "$probe"
}

report_gpus() {
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        log "GPUs: none visible (no nvidia-smi; add --gpus all on a host with the NVIDIA container toolkit). Training runs on CPU."
        return 0
    fi
    local gpus
    if gpus=$(timeout 30 nvidia-smi -L 2>&1); then
        log "GPUs (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-all}):"
        printf '[train_act]   %s\n' "$gpus" >&2
    else
        log "GPUs: nvidia-smi failed, training may fall back to CPU: ${gpus}"
    fi
}

# `manager [FLAGS]`: the Training Manager over the two folders, reachable from outside the container (so a
# token is required; it is printed with the URL). ACT_MANAGER_PORT moves the port.
if [[ ${1:-} == manager ]]; then
    shift
    [[ -d "$input_dir" ]] || die "no data folder: ${input_dir} does not exist" \
        "Mount the folder that holds your datasets: -v /path/to/datasets:${input_dir}"
    check_output
    exec train-act-manager --data_root "$input_dir" --runs_root "$output_dir" \
        --host 0.0.0.0 --port "${ACT_MANAGER_PORT:-8080}" "$@"
fi

want_help=0
[[ $# -eq 0 ]] && want_help=1
if [[ $# -gt 0 && $1 != -* ]]; then
    exec "$@"
fi
# The checks look at the folders the CLI will use: the last --input_dir/--output_dir wins, as in argparse.
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        -h | --help) want_help=1 ;;
        --input_dir) input_dir=${args[i + 1]:-} ;;
        --input_dir=*) input_dir=${args[i]#*=} ;;
        --output_dir) output_dir=${args[i + 1]:-} ;;
        --output_dir=*) output_dir=${args[i]#*=} ;;
    esac
done

if [[ $want_help -eq 1 ]]; then
    usage
    exec "${cli[@]}" --help
fi

check_input
check_output
report_gpus
log "input ${input_dir} -> output ${output_dir}"
exec "${cli[@]}" --input_dir "$input_dir" --output_dir "$output_dir" "$@"
