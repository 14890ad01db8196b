"""Device mesh, logical-axis rules and shardings, following T5X's standard rules.

A `('data', 'model')` mesh spans every device of every process. Logical axis
names on parameters and activations map to mesh axes by rules; prompts are
always replicated, so any host can save one whole.
"""

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prompt_tuning.errors import UserError

LogicalRules = Sequence[Tuple[str, Optional[str]]]

# T5X `standard_logical_axis_rules()` with one model axis, plus the prompt axes.
STANDARD_RULES: Tuple[Tuple[str, Optional[str]], ...] = (
    ('batch', 'data'),
    ('vocab', 'model'),
    ('mlp', 'model'),
    ('heads', 'model'),
    ('joined_kv', 'model'),
    ('kv', None),
    ('embed', None),
    ('length', None),
    ('relpos_buckets', None),
    ('layers', None),
    ('prompt_bank', None),
    ('prompt', None),
    ('prompt_embed', None),
)

_REPLICATED_AXES = ('prompt_bank', 'prompt', 'prompt_embed')


class PartitioningError(UserError, ValueError):
  """The mesh or the rules cannot be built as configured."""


@dataclasses.dataclass(frozen=True)
class Partitioner:
  """Where arrays live: the mesh and the logical-axis rules.

  Attributes:
    num_partitions: size of the `model` axis; the `data` axis takes the rest.
    mesh_shape: an explicit `(data, model)` shape instead of `num_partitions`.
    logical_axis_rules: overrides of `STANDARD_RULES` (same form); the prompt
      axes stay replicated whatever is given.
  """
  num_partitions: int = 1
  mesh_shape: Optional[Tuple[int, int]] = None
  logical_axis_rules: Optional[LogicalRules] = None

  @property
  def rules(self) -> Tuple[Tuple[str, Optional[str]], ...]:
    overrides = dict(self.logical_axis_rules or ())
    for name in _REPLICATED_AXES:
      if overrides.get(name) is not None:
        raise PartitioningError(f'Logical axis {name!r} must stay replicated (mesh axis None), '
                                f'got {overrides[name]!r}.')
    merged = dict(STANDARD_RULES)
    merged.update(overrides)
    return tuple(merged.items())

  def make_mesh(self, devices: Optional[Sequence[Any]] = None) -> Mesh:
    """A `('data', 'model')` mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = self.mesh_shape or (len(devices) // max(self.num_partitions, 1), self.num_partitions)
    if np.prod(shape) != len(devices) or min(shape) < 1:
      raise PartitioningError(
          f'Mesh shape (data, model) = {tuple(shape)} does not fit {len(devices)} devices; set '
          'num_partitions to a divisor of the device count, or mesh_shape to a matching shape.')
    try:
      device_grid = mesh_utils.create_device_mesh(tuple(shape), devices)
    except (AssertionError, ValueError, NotImplementedError):
      device_grid = np.asarray(devices).reshape(shape)  # no topology-aware layout for this platform
    return Mesh(device_grid, ('data', 'model'))

  def shardings(self, mesh: Mesh, boxed_tree: Any) -> Any:
    """NamedShardings for a tree of `nn.LogicallyPartitioned` values (or their abstract shapes)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, self.rules)

  def activation_context(self):
    """Context under which the model's `with_logical_constraint` calls take effect (with the mesh)."""
    return nn.logical_axis_rules(self.rules)


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Batches are split on their leading axis over `data`, replicated over `model`."""
  return NamedSharding(mesh, PartitionSpec('data'))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the data axis and over processes."""
  data = mesh.shape['data']
  if batch_size % data:
    raise PartitioningError(f'BATCH_SIZE={batch_size} is not divisible by the mesh data axis '
                            f'({data}); choose a multiple of {data}.')
  if batch_size % jax.process_count():
    raise PartitioningError(f'BATCH_SIZE={batch_size} is not divisible by the number of processes '
                            f'({jax.process_count()}).')


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """This process's rows of the batch -> global arrays sharded on `data`."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def replicated_batch(batch: dict, mesh: Mesh) -> dict:
  """A batch every process holds whole (eval, infer) -> global arrays sharded on `data`.

  Each process supplies only the rows of its own devices.
  """
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
          for k, v in batch.items()}
