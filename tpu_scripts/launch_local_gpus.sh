#!/usr/bin/env bash
# Runs training, evaluation or inference on the GPUs of this machine: one
# process that sees every GPU, or one process per GPU joined by
# jax.distributed. It knows nothing of clouds or TPUs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run] [-- FLAGS...]

With NUM_PROCESSES=1 (the default), runs 'python -m prompt_tuning.MODE ...'
in the foreground; JAX then uses every visible GPU. With NUM_PROCESSES=N,
starts N processes in the background, process i on GPU i
(CUDA_VISIBLE_DEVICES=i), joined through a coordinator on 127.0.0.1, each
logging to LOG_DIR/MODE.i.log; it waits for all of them, and stops the others
as soon as one fails or on Ctrl-C."
define_training_settings python
define NUM_PROCESSES value 'Processes to start: 1, or one per GPU.' 1
define COORDINATOR_PORT value \
  'Local port of the jax.distributed coordinator (NUM_PROCESSES > 1).' 12345
define LOG_DIR value 'Folder of the per-process logs (NUM_PROCESSES > 1).' logs
parse_args "$@"

if [[ ! $NUM_PROCESSES =~ ^[1-9][0-9]*$ ]]; then
  die "NUM_PROCESSES must be a whole number of at least 1, got '$NUM_PROCESSES'"
fi
if ((NUM_PROCESSES == 1)); then
  training_command
  run "${TRAINING_COMMAND[@]}"
  exit
fi

run mkdir -p "$LOG_DIR"
pids=()
# Background jobs of a script ignore Ctrl-C: pass it on, and reap them. Every job of this
# shell, not only those in pids: one started just before the signal may not be listed yet.
trap 'kill $(jobs -p) 2>/dev/null; wait; exit 130' INT TERM
for ((i = 0; i < NUM_PROCESSES; i++)); do
  training_command --multiprocess \
    --coordinator_address="127.0.0.1:$COORDINATOR_PORT" \
    --process_count="$NUM_PROCESSES" --process_index="$i"
  run_in_background "$LOG_DIR/$MODE.$i.log" \
    env CUDA_VISIBLE_DEVICES="$i" "${TRAINING_COMMAND[@]}"
  pids+=("$BG_PID")
done
if is_on DRY_RUN; then
  exit 0
fi

for _ in "${pids[@]}"; do
  status=0
  wait -n || status=$?
  if ((status != 0)); then
    printf '%s: a process exited with status %d; stopping the others (logs in %s)\n' \
      "$SCRIPT_NAME" "$status" "$LOG_DIR" >&2
    kill "${pids[@]}" 2>/dev/null || true
    wait || true
    exit "$status"
  fi
done
printf '%s: all %d processes finished (logs in %s)\n' \
  "$SCRIPT_NAME" "$NUM_PROCESSES" "$LOG_DIR" >&2
