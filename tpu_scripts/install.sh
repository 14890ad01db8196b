#!/usr/bin/env bash
# Installs the project, with its TPU extra, on every worker of a TPU VM or pod
# slice: from a local checkout (copied over) or from a git URL.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run]

Installs prompt_tuning on every worker. A local INSTALL_FROM folder is copied
to ~/REMOTE_DIR on each worker (replacing an older copy) and installed
editable; a git URL is installed by pip straight from the repository."
define_ssh_settings
define INSTALL_FROM value \
  'A local checkout (copied to every worker) or a git URL such as https://github.com/ORG/REPO@BRANCH.' \
  "$(cd "$(dirname "$0")/.." && pwd)"
# Not `prompt_tuning`: runs start in the home folder, where a folder of that
# name would shadow the installed package.
define REMOTE_DIR value \
  'Folder in the home folder of each worker that a local checkout is copied to.' \
  prompt-tuning
define EXTRAS value 'pip extras installed with the project.' tpu
define PYTHON value 'Python interpreter on the workers.' python3
parse_args "$@"

extras=${EXTRAS:+[$EXTRAS]}
if [[ -d $INSTALL_FROM ]]; then
  # The copy is deleted first, so REMOTE_DIR must be a plain name at home.
  if [[ ! $REMOTE_DIR =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]*$ ]]; then
    die "REMOTE_DIR must be a plain folder name, got '$REMOTE_DIR'"
  fi
  # scp would nest a new copy inside an old one instead of replacing it.
  tpu_ssh all "rm -rf $(shell_quote "$REMOTE_DIR")"
  gcloud_tpu_ssh scp --recurse --compress --worker=all \
    "$INSTALL_FROM" "$TPU_NAME:$REMOTE_DIR"
  requirement=(-e "./$REMOTE_DIR$extras")
else
  case $INSTALL_FROM in
    git+*) url=$INSTALL_FROM ;;
    *://*) url=git+$INSTALL_FROM ;;
    *) die "INSTALL_FROM must be a local folder or a git URL, got '$INSTALL_FROM'" ;;
  esac
  requirement=("prompt_tuning$extras @ $url")
fi
tpu_ssh all "$(quote_words "$PYTHON" -m pip install "${requirement[@]}")"
