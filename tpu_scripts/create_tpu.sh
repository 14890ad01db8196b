#!/usr/bin/env bash
# Creates a Cloud TPU VM, or a pod slice when the accelerator type spans
# several hosts. It only creates the machine: installing and running the
# project are other scripts' jobs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

USAGE="Usage: $SCRIPT_NAME [--setting=VALUE ...] [--dry-run] [-- GCLOUD_FLAGS...]

Creates a Cloud TPU VM. An ACCELERATOR_TYPE with more chips than one host
holds (v3-32, v4-32, v5litepod-16, ...) makes a pod slice: one VM per host,
created together, that the other scripts drive on all workers at once."
define_tpu_settings
define ACCELERATOR_TYPE value \
  'TPU type and size: v3-8 is one host; v3-32 or v4-32 a pod slice.' v3-8
define TPU_VERSION value \
  'TPU software (runtime) version (default: the JAX base image for ACCELERATOR_TYPE).'
define SPOT switch 'Create a Spot TPU: cheaper, and can be preempted at any time.'
define PREEMPTIBLE switch 'Create a preemptible TPU (the older form of Spot).'
EXTRA_ARGS_HELP='Passed on to gcloud compute tpus tpu-vm create, e.g. --network=NAME.'
parse_args "$@"

if is_on SPOT && is_on PREEMPTIBLE; then
  die 'SPOT and PREEMPTIBLE exclude each other; set one of them'
fi
if [[ -z $TPU_VERSION ]]; then
  # The base images that Cloud TPU documents for JAX, by TPU generation.
  case $ACCELERATOR_TYPE in
    v6e-*) TPU_VERSION=v2-alpha-tpuv6e ;;
    v5p-*) TPU_VERSION=v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) TPU_VERSION=v2-alpha-tpuv5-lite ;;
    *) TPU_VERSION=tpu-ubuntu2204-base ;;
  esac
fi

flags=(--accelerator-type="$ACCELERATOR_TYPE" --version="$TPU_VERSION")
if is_on SPOT; then
  flags+=(--spot)
fi
if is_on PREEMPTIBLE; then
  flags+=(--preemptible)
fi
gcloud_tpu create "$TPU_NAME" "${flags[@]}" ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}
