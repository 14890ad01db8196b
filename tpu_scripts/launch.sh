#!/usr/bin/env bash
# Starts training, evaluation or inference on every worker of a TPU VM or pod
# slice: the same command on each host, detached from ssh, logging to a file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run] [-- FLAGS...]

Runs 'python3 -m prompt_tuning.MODE ... --multiprocess' on all workers at
once; jax.distributed.initialize() finds the pod topology by itself. With
--trainer=t5x it runs Google's T5X instead, 'python3 -m t5x.MODE' with
gin/t5x/ files (T5X installed on the workers; --gin_search_paths must
reach the folder holding gin/, e.g. the installed prompt_tuning package). Each
worker runs it under nohup in the background, writing to ~/LOG_FILE, so it
survives the end of the ssh session: follow it with tail_logs.sh, stop it
with kill_tpu_processes.sh."
define_ssh_settings
define_training_settings python3
define_log_settings
define TRAINER value 'Which trainer runs: prompt_tuning (this project) or t5x (T5X).' prompt_tuning
parse_args "$@"

case $TRAINER in
  prompt_tuning) training_command --multiprocess ;;
  t5x)
    # T5X's eval and infer name their output folder with their own macros.
    case $MODE in
      eval) training_command "--gin.EVAL_OUTPUT_DIR='$MODEL_DIR'" ;;
      infer) training_command "--gin.INFER_OUTPUT_DIR='$MODEL_DIR'" ;;
      *) training_command ;;
    esac
    TRAINING_COMMAND[2]="t5x.$MODE"
    ;;
  *) die "TRAINER must be prompt_tuning or t5x, got '$TRAINER'" ;;
esac
resolve_log_file
command=$(quote_words "${TRAINING_COMMAND[@]}")
log=$(shell_quote "$LOG_FILE")
log_dir=$(shell_quote "$(dirname "$LOG_FILE")")
tpu_ssh all "mkdir -p $log_dir && nohup $command > $log 2>&1 < /dev/null &"
if ! is_on DRY_RUN; then
  printf '%s: started on all workers of %s; logs in ~/%s (tail_logs.sh)\n' \
    "$SCRIPT_NAME" "$TPU_NAME" "$LOG_FILE" >&2
fi
