#!/usr/bin/env bash
# Follows the log that launch.sh writes, on one worker or on all of them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run]

Shows the last TAIL_LINES lines of ~/LOG_FILE on the chosen worker(s), then
follows it until Ctrl-C (which leaves the run going). With several workers,
each line starts with the worker's host name."
define_ssh_settings
define_mode_setting
define_log_settings
define WORKER value 'Worker(s) to read: an index, 1,4,6, 1-3 or all.' 0
define TAIL_LINES value 'Lines of history shown before following.' 100
parse_args "$@"

resolve_log_file
if [[ ! $TAIL_LINES =~ ^[0-9]+$ ]]; then
  die "TAIL_LINES must be a whole number, got '$TAIL_LINES'"
fi
# -F keeps retrying while the run has not yet created the file.
command="tail -n $TAIL_LINES -F $(shell_quote "$LOG_FILE")"
if [[ ! $WORKER =~ ^[0-9]+$ ]]; then
  # shellcheck disable=SC2016  # $(hostname) is for the worker's shell.
  command+=' | sed -u "s/^/$(hostname): /"'
fi
tpu_ssh "$WORKER" "$command"
