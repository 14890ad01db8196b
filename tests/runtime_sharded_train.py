"""Child process of the distributed-training tests: a toy run on a mesh of simulated CPUs.

Usage: `python runtime_sharded_train.py MACROS_JSON`, with XLA_FLAGS giving
the host devices (jax reads it once, at start-up) and the mesh set in the
macros. Prints one JSON line: the device count, the per-step losses, and
each trained parameter's PartitionSpec, shard shape and full replication.
"""

import json
import sys

import flax
import jax

import runtime_helpers as h


def _spec(sharding) -> list:
  return [list(axis) if isinstance(axis, tuple) else axis for axis in sharding.spec]


def main(macros_json: str) -> None:
  result = h.train_in_process(json.loads(macros_json))
  params = flax.traverse_util.flatten_dict(result.params, sep='/')
  print(json.dumps({
      'devices': jax.device_count(),
      'losses': result.losses,
      'specs': {path: _spec(x.sharding) for path, x in params.items()},
      'shard_shapes': {path: list(x.addressable_shards[0].data.shape)
                       for path, x in params.items()},
      'replicated': {path: x.is_fully_replicated for path, x in params.items()},
  }))


if __name__ == '__main__':
  main(sys.argv[1])
