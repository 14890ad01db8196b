"""Mesh and logical-axis rules: T5X's standard mapping, prompts always replicated, one-line errors.

Meshes larger than this process's device are abstract (`AbstractMesh`): the
rules and checks need only the axis sizes. Real multi-device runs are in
test_runtime_sharding.py.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, PartitionSpec

from prompt_tuning.runtime import partitioning

MESH_2X4 = AbstractMesh((2, 4), ('data', 'model'))


def mesh_axes(partitioner, logical):
  return nn.logical_to_mesh_axes(logical, partitioner.rules)


@pytest.mark.parametrize('logical, expected', [
    (('batch', 'length'), PartitionSpec('data', None)),
    (('vocab', 'embed'), PartitionSpec('model', None)),
    (('embed', 'mlp'), PartitionSpec(None, 'model')),
    (('embed', 'joined_kv'), PartitionSpec(None, 'model')),
    (('heads', 'relpos_buckets'), PartitionSpec('model', None)),
    (('prompt', 'prompt_embed'), PartitionSpec(None, None)),
    (('prompt_bank', 'prompt', 'prompt_embed'), PartitionSpec(None, None, None)),
])
def test_standard_rules_follow_t5x(logical, expected):
  assert mesh_axes(partitioning.Partitioner(), logical) == expected


def test_rules_can_be_overridden_except_for_the_prompt():
  custom = partitioning.Partitioner(logical_axis_rules=[('embed', 'model'), ('mlp', None)])
  assert mesh_axes(custom, ('embed', 'mlp')) == PartitionSpec('model', None)
  assert mesh_axes(custom, ('prompt', 'prompt_embed')) == PartitionSpec(None, None)


@pytest.mark.parametrize('axis', ['prompt', 'prompt_embed', 'prompt_bank'])
def test_sharding_a_prompt_axis_is_a_one_line_error(axis):
  partitioner = partitioning.Partitioner(logical_axis_rules=[(axis, 'model')])
  with pytest.raises(partitioning.PartitioningError, match=f"'{axis}'.*replicated") as error:
    partitioner.rules  # pylint: disable=pointless-statement
  assert '\n' not in str(error.value)


def test_the_mesh_spans_every_device_on_data_by_default():
  mesh = partitioning.Partitioner().make_mesh()
  assert mesh.axis_names == ('data', 'model')
  assert mesh.shape == {'data': jax.device_count(), 'model': 1}


@pytest.mark.parametrize('partitioner', [partitioning.Partitioner(num_partitions=2),
                                         partitioning.Partitioner(mesh_shape=(2, 4))])
def test_a_mesh_that_does_not_fit_the_devices_is_a_one_line_error(partitioner):
  with pytest.raises(partitioning.PartitioningError, match='does not fit 1 devices'):
    partitioner.make_mesh(jax.devices()[:1])


def test_a_batch_that_does_not_split_over_the_data_axis_is_refused():
  partitioning.check_batch_size(8, MESH_2X4)
  with pytest.raises(partitioning.PartitioningError, match='BATCH_SIZE=7 .* data axis \\(2\\)'):
    partitioning.check_batch_size(7, MESH_2X4)


def test_parameter_shardings_come_from_their_logical_axes():
  boxed = {'kernel': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((8, 16), np.float32),
                                             ('embed', 'mlp')),
           'prompt': nn.LogicallyPartitioned(jax.ShapeDtypeStruct((4, 8), np.float32),
                                             ('prompt', 'prompt_embed'))}
  partitioner = partitioning.Partitioner()
  shardings = partitioner.shardings(partitioner.make_mesh(), boxed)
  assert shardings['kernel'].spec == PartitionSpec(None, 'model')
  assert shardings['prompt'].spec == PartitionSpec(None, None)


def test_host_rows_become_one_global_batch_sharded_on_data():
  mesh = partitioning.Partitioner().make_mesh()
  local = {'encoder_input_tokens': np.arange(12, dtype=np.int32).reshape(4, 3)}
  for batch in (partitioning.global_batch(local, mesh), partitioning.replicated_batch(local, mesh)):
    array = batch['encoder_input_tokens']
    assert array.sharding.spec == PartitionSpec('data')
    np.testing.assert_array_equal(array, local['encoder_input_tokens'])
