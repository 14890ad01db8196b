#!/usr/bin/env bash
# Deletes a Cloud TPU VM or pod slice, with everything on its disks.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run]

Deletes the TPU VM or pod slice. Logs and files on its workers are lost;
checkpoints in MODEL_DIR on gs:// are kept. gcloud asks for confirmation
unless YES is set."
define_tpu_settings
define YES switch 'Delete without asking for confirmation.'
parse_args "$@"

flags=()
if is_on YES; then
  flags+=(--quiet)
fi
gcloud_tpu delete "$TPU_NAME" ${flags[@]+"${flags[@]}"}
