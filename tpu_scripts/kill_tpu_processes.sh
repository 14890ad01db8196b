#!/usr/bin/env bash
# Frees the TPU on every worker: kills the project's runs and any other
# process that still holds the TPU devices (a crashed or stuck run keeps them,
# and the next run then fails with "TPU in use").
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run]

On each chosen worker: kills 'python -m prompt_tuning.{train,eval,infer}',
kills whatever still has /dev/accel* (TPU v2-v4) or /dev/vfio/* (v5e and
later) open, and removes libtpu's lock file. Prints what it killed."
define_ssh_settings
define WORKER value 'Worker(s) to clean: all, an index, 1,4,6 or 1-3.' all
parse_args "$@"

# The bracket keeps pkill from matching the shell that runs this very line.
tpu_ssh "$WORKER" "sudo pkill -9 -e -f 'prompt_tuning[.](train|eval|infer)'; \
sudo lsof -t /dev/accel* /dev/vfio/* 2>/dev/null | sort -u | xargs -r -t sudo kill -9; \
sudo rm -f /tmp/libtpu_lockfile"
