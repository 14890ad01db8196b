#!/usr/bin/env bash
# Helpers that every script in tpu_scripts/ sources: settings read from flags
# or environment variables, usage text, dry-run, and quoting of the commands
# they print. It is sourced, never run; the gcloud and training-CLI details
# live only in `gcloud_tpu`, `tpu_ssh` and `training_command`.
#
# A script declares its settings, then calls `parse_args "$@"`:
#   define NAME KIND HELP [DEFAULT]   KIND is value, required or switch (0/1)
# and each setting can then be given as --name=VALUE, --name VALUE or NAME=VALUE
# in the environment (a flag wins). A switch also takes a bare --name.

# Settings are assigned by `define` through printf -v, and BG_PID is read by
# the scripts that source this file.
# shellcheck disable=SC2034,SC2153

SCRIPT_NAME=$(basename "$0")
USAGE=''            # the script's synopsis and description, printed by -h
EXTRA_ARGS_HELP=''  # what arguments after `--` mean; empty: none accepted
EXTRA_ARGS=()       # the arguments after `--`
_NAMES=()
_KINDS=()
_DEFAULTS=()
_HELPS=()

# Prints "SCRIPT: message" on stderr and exits 2 (a usage error).
die() {
  printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 2
}

# Declares a setting and gives it its default unless the environment set it.
define() {
  local default=${4-}
  if [[ $2 == switch ]]; then
    default=0
  fi
  _NAMES+=("$1")
  _KINDS+=("$2")
  _HELPS+=("$3")
  _DEFAULTS+=("$default")
  if [[ -z ${!1+set} ]]; then
    printf -v "$1" '%s' "$default"
  fi
}

# True when the switch named $1 is on (anything but '', 0, false, no, off).
is_on() {
  case ${!1:-} in
    '' | 0 | false | no | off) return 1 ;;
    *) return 0 ;;
  esac
}

# The flag for a setting name: TPU_NAME -> --tpu_name.
_flag_for() {
  printf -- '--%s' "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
}

# The index of the setting that flag $1 (--tpu_name or --tpu-name) sets.
_index_for_flag() {
  local name i
  name=$(printf '%s' "${1#--}" | tr '[:lower:]-' '[:upper:]_')
  for i in "${!_NAMES[@]}"; do
    if [[ ${_NAMES[i]} == "$name" ]]; then
      printf '%s' "$i"
      return 0
    fi
  done
  die "unknown flag $1 (see --help)"
}

print_usage() {
  local i label note
  printf '%s\n\nSettings (flag, or environment variable):\n' "$USAGE"
  for i in "${!_NAMES[@]}"; do
    label="$(_flag_for "${_NAMES[i]}"), ${_NAMES[i]}"
    case ${_KINDS[i]} in
      required) note=' (required)' ;;
      switch) label+='=1' note='' ;;
      *) note=${_DEFAULTS[i]:+" (default: ${_DEFAULTS[i]})"} ;;
    esac
    printf '  %-38s %s%s\n' "$label" "${_HELPS[i]}" "$note"
  done
  printf '  %-38s %s\n' '--dry-run, DRY_RUN=1' \
    'Print the commands, one per line, without running them.'
  printf '  %-38s %s\n' '-h, --help' 'Print this help.'
  if [[ -n $EXTRA_ARGS_HELP ]]; then
    printf '  %-38s %s\n' '-- ARGS...' "$EXTRA_ARGS_HELP"
  fi
}

# Reads flags into the declared settings, then checks the required ones.
parse_args() {
  local i
  : "${DRY_RUN:=0}"
  while (($#)); do
    case $1 in
      -h | --help)
        print_usage
        exit 0
        ;;
      --dry-run | --dry_run) DRY_RUN=1 ;;
      --)
        shift
        [[ -n $EXTRA_ARGS_HELP || $# -eq 0 ]] ||
          die "takes no arguments after --, got: $*"
        EXTRA_ARGS=("$@")
        break
        ;;
      --*=*)
        i=$(_index_for_flag "${1%%=*}") || exit
        printf -v "${_NAMES[i]}" '%s' "${1#*=}"
        ;;
      --*)
        i=$(_index_for_flag "$1") || exit
        if [[ ${_KINDS[i]} == switch ]]; then
          printf -v "${_NAMES[i]}" '%s' 1
        else
          (($# > 1)) || die "flag $1 needs a value"
          printf -v "${_NAMES[i]}" '%s' "$2"
          shift
        fi
        ;;
      *) die "unexpected argument '$1' (see --help)" ;;
    esac
    shift
  done
  for i in "${!_NAMES[@]}"; do
    if [[ ${_KINDS[i]} == required && -z ${!_NAMES[i]} ]]; then
      die "missing required setting ${_NAMES[i]}:" \
        "pass $(_flag_for "${_NAMES[i]}")=... or set ${_NAMES[i]}=..."
    fi
  done
}

# Prints $1 with every character found in $2 written as $3<char>$4.
_escape() {
  local out='' c i
  for ((i = 0; i < ${#1}; i++)); do
    c=${1:i:1}
    if [[ $2 == *"$c"* ]]; then
      out+=$3$c${4-}
    else
      out+=$c
    fi
  done
  printf '%s' "$out"
}

# Prints $1 as one shell word, quoted only as much as it needs: bare, '...',
# "..." (when it holds single quotes), or '...' with '\'' (when it also
# holds a `!`, which an interactive shell would expand inside "...").
shell_quote() {
  local safe='^[A-Za-z0-9_./:=@%+,-]+$'
  if [[ $1 =~ $safe ]]; then
    printf '%s' "$1"
  elif [[ $1 != *"'"* ]]; then
    printf "'%s'" "$1"
  elif [[ $1 != *'!'* ]]; then
    printf '"'
    _escape "$1" '\"$`' "\\"
    printf '"'
  else
    printf "'"
    _escape "$1" "'" "'\\" "'"
    printf "'"
  fi
}

# Prints the words as one command line that a shell reads back as the same words.
quote_words() {
  local word line=''
  for word in "$@"; do
    line+="${line:+ }$(shell_quote "$word")"
  done
  printf '%s\n' "$line"
}

# Runs a command, or prints it on stdout in dry-run mode. Real runs echo it on
# stderr first, so the output of a run shows what ran.
run() {
  if is_on DRY_RUN; then
    quote_words "$@"
  else
    printf '+ %s\n' "$(quote_words "$@")" >&2
    "$@"
  fi
}

# Like `run`, but in the background with its output in file $1; sets BG_PID
# (empty in dry-run mode).
run_in_background() {
  local log=$1 line
  shift
  line="$(quote_words "$@") > $(shell_quote "$log") 2>&1 &"
  BG_PID=''
  if is_on DRY_RUN; then
    printf '%s\n' "$line"
  else
    printf '+ %s\n' "$line" >&2
    "$@" >"$log" 2>&1 &
    BG_PID=$!
  fi
}

# The settings that name a TPU VM or pod slice.
define_tpu_settings() {
  define TPU_NAME required 'Name of the TPU VM or pod slice.'
  define ZONE required 'Zone of the TPU, e.g. us-central2-b.'
  define PROJECT value 'Google Cloud project (default: the one gcloud is set to).'
}

# The settings of scripts that reach the workers over ssh.
define_ssh_settings() {
  define_tpu_settings
  define SSH_FLAGS value \
    'Extra gcloud ssh/scp flags, space-separated, e.g. --internal-ip.'
}

# Runs `gcloud compute tpus tpu-vm ARGS... --zone=... [--project=...]`.
gcloud_tpu() {
  run gcloud compute tpus tpu-vm "$@" --zone="$ZONE" \
    ${PROJECT:+"--project=$PROJECT"}
}

# Runs `gcloud compute tpus tpu-vm ARGS...` with the SSH_FLAGS added.
gcloud_tpu_ssh() {
  local ssh_flags=()
  read -ra ssh_flags <<<"$SSH_FLAGS"
  gcloud_tpu "$@" ${ssh_flags[@]+"${ssh_flags[@]}"}
}

# Runs shell command $2 on worker(s) $1 (an index, 1,4,6, 1-3 or all).
tpu_ssh() {
  gcloud_tpu_ssh ssh "$TPU_NAME" --worker="$1" --command "$2"
}

define_mode_setting() {
  define MODE value 'What to run: train, eval or infer.' train
}

check_mode() {
  case $MODE in
    train | eval | infer) ;;
    *) die "MODE must be train, eval or infer, got '$MODE'" ;;
  esac
}

# The settings of the training, evaluation and inference commands; $1 is the
# default Python interpreter.
define_training_settings() {
  define_mode_setting
  define GIN_FILES required \
    'Gin files, separated by spaces or commas, in T5X order (models, prompts, sizes, decoding, runs).'
  define MODEL_DIR required 'Where checkpoints, summaries and outputs go (gs://... on TPUs).'
  define GIN_SEARCH_PATHS value 'Extra folders to find gin files in, comma-separated.'
  define TFDS_DATA_DIR value 'TensorFlow Datasets data folder (gs://... on TPUs).'
  define PYTHON value 'Python interpreter that runs the module.' "$1"
  EXTRA_ARGS_HELP='Passed on to the Python module as they are, e.g. --gin.TRAIN_STEPS=1000.'
}

# Sets TRAINING_COMMAND to `PYTHON -m prompt_tuning.MODE` with the gin files,
# MODEL_DIR and data flags, then the arguments given here (e.g. --multiprocess),
# then the arguments after `--`, so that the user's overrides come last.
training_command() {
  local gin_files=() file
  check_mode
  IFS=$' \t\n,' read -ra gin_files <<<"$GIN_FILES"
  TRAINING_COMMAND=("$PYTHON" -m "prompt_tuning.$MODE")
  for file in ${gin_files[@]+"${gin_files[@]}"}; do
    TRAINING_COMMAND+=("--gin_file=$file")
  done
  # A gin string needs its own quotes: --gin.MODEL_DIR='gs://...'.
  TRAINING_COMMAND+=("--gin.MODEL_DIR='$MODEL_DIR'")
  if [[ -n $GIN_SEARCH_PATHS ]]; then
    TRAINING_COMMAND+=("--gin_search_paths=$GIN_SEARCH_PATHS")
  fi
  if [[ -n $TFDS_DATA_DIR ]]; then
    TRAINING_COMMAND+=("--tfds_data_dir=$TFDS_DATA_DIR")
  fi
  TRAINING_COMMAND+=("$@" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"})
}

# The settings that locate the log of a run on the workers.
define_log_settings() {
  define LOG_FILE value \
    'Log file on each worker, relative to the home folder (default: logs/MODE.log).'
}

# Sets LOG_FILE to logs/MODE.log when it is empty.
resolve_log_file() {
  check_mode
  LOG_FILE=${LOG_FILE:-logs/$MODE.log}
}
