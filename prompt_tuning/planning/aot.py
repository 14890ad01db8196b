"""Compiles a run's real train and decode steps for a slice, ahead of time, and reads the programs.

Every argument is a `jax.ShapeDtypeStruct` carrying its sharding, built by
the runtime itself: `run_setup.lay_out` (mesh, parameter shardings, what
trains), `Layout.abstract_params` (the initial parameters' shapes and
dtypes), `Trainer.abstract_state` and `Trainer.jit_train_step`. So the
program compiled here is the one a run compiles; nothing is read,
allocated or run. Knows no gin and prints nothing.
"""

import dataclasses
import math
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import seqio

from prompt_tuning.planning import chips, flops, hlo
from prompt_tuning.runtime import evaluation, inputs, partitioning, run_setup
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel

Params = Any

# T5's EOS id. Decoding compares tokens to it: a constant of the program, not of its size. It
# stands in for a SentencePiece vocabulary's, which would be read from its file to be known.
_STAND_IN_EOS_ID = 1


@dataclasses.dataclass(frozen=True)
class Step:
  """One compiled program, per device.

  Attributes:
    name: 'train' or 'decode'.
    compile_seconds: lowering and compiling it here.
    argument_bytes, output_bytes, alias_bytes, temp_bytes, code_bytes: XLA's
      `memory_analysis()` (aliased bytes are outputs that reuse donated arguments).
    xla_flops: XLA's `cost_analysis()` FLOPs, which count a loop body once.
    flops: FLOPs over all layers: `xla_flops` plus the matmuls of the scanned
      layers' other iterations (see `scanned_layer_flops`).
    bytes_accessed: XLA's count of HBM bytes read and written, loop bodies once.
    collectives: the compiled program's collectives (see `hlo.collectives`).
  """
  name: str
  compile_seconds: float
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  code_bytes: int
  xla_flops: float
  flops: float
  bytes_accessed: float
  collectives: Dict[str, hlo.Collective]

  @property
  def peak_bytes(self) -> int:
    """What the device holds while the program runs: its code, arguments, outputs, temporaries."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)


@dataclasses.dataclass(frozen=True)
class Plan:
  """One configuration on one slice.

  Attributes:
    topology: the slice.
    mesh_shape: (data, model).
    remat_policy, scan: the model's `remat_policy` and `scan_layers`.
    frozen_bytes: the frozen weights one device holds (their shards, by hand).
    trainable_bytes: the trainable parameters (the prompt) and their optimizer
      state one device holds.
    train, decode: the compiled steps; None where not compiled (refused, or no
      optimizer / decoding asked for).
    formula_flops: the train step's exact matmul FLOPs (`flops.train_step_flops`) over all
      devices, without remat's recomputation.
    refused: the compiler's line when it refused the program (RESOURCE_EXHAUSTED).
  """
  topology: chips.Topology
  mesh_shape: Tuple[int, int]
  remat_policy: str
  scan: bool
  frozen_bytes: int
  trainable_bytes: int
  train: Optional[Step] = None
  decode: Optional[Step] = None
  formula_flops: Optional[int] = None
  refused: Optional[str] = None

  @property
  def steps(self) -> List[Step]:
    return [s for s in (self.train, self.decode) if s is not None]

  @property
  def peak_bytes(self) -> int:
    return max((s.peak_bytes for s in self.steps), default=0)

  @property
  def fits(self) -> bool:
    return self.refused is None and self.peak_bytes <= self.topology.device_memory

  @property
  def roofline_seconds(self) -> Optional[float]:
    """The train step's roofline: max(FLOPs / peak FLOP/s, bytes / HBM bandwidth), per device.

    A lower bound on the step time: XLA's byte count holds each loop body once.
    """
    if self.train is None or self.topology.chip is None:
      return None
    return max(self.train.flops / self.topology.device_flops,
               self.train.bytes_accessed / self.topology.device_bandwidth)


def _resource_exhausted(error: Exception) -> Optional[str]:
  """The compiler's one line when it refused a program for its size, else None."""
  line = str(error).strip().split('\n', 1)[0]
  return line if 'RESOURCE_EXHAUSTED' in line else None


def shard_bytes(tree: Params) -> int:
  """Bytes one device holds of a tree of sharded `jax.ShapeDtypeStruct`s (the largest shard)."""
  def one(x):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    return math.prod(shape) * np.dtype(x.dtype).itemsize
  return sum(one(x) for x in jax.tree_util.tree_leaves(tree))


def with_layers(model: EncoderDecoderModel, *, remat_policy: str,
                scan: bool) -> EncoderDecoderModel:
  """The same model with T5Config's `remat_policy` and `scan_layers` (the gin options)."""
  config = dataclasses.replace(model.module.config, remat_policy=remat_policy, scan_layers=scan)
  return dataclasses.replace(model, module=model.module.clone(config=config))


def _compile(name: str, jitted, args: tuple, layout: run_setup.Layout,
             partitioner: partitioning.Partitioner) -> Step:
  """`jitted` lowered and compiled for `args` under the run's mesh and rules, and its figures.

  `flops` is XLA's count here; the caller adds what a scanned stack leaves out.
  """
  start = time.perf_counter()
  with jax.set_mesh(layout.mesh), partitioner.activation_context():
    compiled = jitted.lower(*args).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return Step(name=name, compile_seconds=seconds,
              argument_bytes=memory.argument_size_in_bytes,
              output_bytes=memory.output_size_in_bytes, alias_bytes=memory.alias_size_in_bytes,
              temp_bytes=memory.temp_size_in_bytes,
              code_bytes=memory.generated_code_size_in_bytes,
              xla_flops=float(cost.get('flops', 0.0)), flops=float(cost.get('flops', 0.0)),
              bytes_accessed=float(cost.get('bytes accessed', 0.0)),
              collectives=hlo.collectives(compiled.as_text()))


def scanned_layer_flops(step_fn, args: tuple, layout: run_setup.Layout,
                        partitioner: partitioning.Partitioner) -> float:
  """Per device, the matmul FLOPs of the scanned layers' iterations that XLA's count leaves out.

  XLA's `cost_analysis` counts a loop body once. The step's jaxpr is
  counted twice, with each scan once per iteration and once in all; the
  difference, split evenly over the devices (every layer's matmuls are split
  over both mesh axes), is what a scanned stack adds.
  """
  if not layout.model.module.config.scan_layers:
    return 0.0
  with jax.set_mesh(layout.mesh), partitioner.activation_context():
    every = flops.jaxpr_matmul_flops(step_fn, *args)
    once = flops.jaxpr_matmul_flops(step_fn, *args, scan_bodies_once=True)
  return (every - once) / layout.mesh.size


def abstract_batch(layout: run_setup.Layout) -> Dict[str, jax.ShapeDtypeStruct]:
  """The global batch as the loop hands it to the step: int32 features split on `data`.

  With a prompt bank, also each row's `prompt_index` [B].
  """
  sharding = partitioning.data_sharding(layout.mesh)
  shapes = dict(layout.input_shapes)
  if layout.model.prompt_bank_size:
    shapes['prompt_index'] = shapes['encoder_input_tokens'][:1]
  return {name: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sharding)
          for name, shape in shapes.items()}


def _decode_model(model: EncoderDecoderModel) -> EncoderDecoderModel:
  """`model`, with a vocabulary that knows its EOS id without reading a file."""
  if not isinstance(model.vocabulary, seqio.SentencePieceVocabulary):
    return model
  vocabulary = seqio.PassThroughVocabulary(model.module.config.vocab_size, _STAND_IN_EOS_ID)
  return dataclasses.replace(model, vocabulary=vocabulary)


def prompt_length(model: EncoderDecoderModel) -> int:
  prompt_config = getattr(model.module, 'prompt_config', None)
  return prompt_config.length if prompt_config is not None else 0


def plan(model: EncoderDecoderModel, optimizer: Optional[optax.GradientTransformation],
         run_config: run_setup.RunConfig, dataset_config: inputs.DatasetConfig,
         topology: chips.Topology, mesh_shape: Optional[Tuple[int, int]] = None, *,
         decode: bool = True) -> Plan:
  """Compiles the configured train step (when `optimizer` is given) and decode step for `topology`.

  Args:
    model: the model, with its remat policy and scan settings.
    optimizer: OPTIMIZER; None plans the decode step only (eval and infer).
    run_config: the run's settings; its partitioner gives the mesh unless `mesh_shape` does.
    dataset_config: the batch size and lengths (the data is not read).
    topology: the slice.
    mesh_shape: (data, model), overriding the partitioner's.
    decode: also compile the decode step of eval/infer (greedy decoding of the targets' length).

  Raises:
    UserError: the configuration cannot be laid out on the slice (e.g. BATCH_SIZE does
      not split over the data axis). A program too large for the devices is not an
      error: the plan says it was refused.
  """
  partitioner = run_config.partitioner
  if mesh_shape is not None:
    partitioner = dataclasses.replace(partitioner, mesh_shape=tuple(mesh_shape))
  run_config = dataclasses.replace(run_config, partitioner=partitioner)
  layout = run_setup.lay_out(model, run_config, dataset_config, devices=topology.devices())
  params = layout.abstract_params()
  trainable, frozen = optim.split(params, layout.labels)
  config = model.module.config
  plan_so_far = Plan(topology=topology, mesh_shape=tuple(layout.mesh.devices.shape),
                     remat_policy=config.remat_policy, scan=config.scan_layers,
                     frozen_bytes=shard_bytes(frozen), trainable_bytes=shard_bytes(trainable))
  if plan_so_far.frozen_bytes > topology.device_memory:  # not worth compiling
    return dataclasses.replace(plan_so_far, refused=(
        f'the frozen weights alone need {plan_so_far.frozen_bytes / 2**30:.2f} GiB per device, '
        f'more than its {topology.device_memory / 2**30:.2f} GiB'))
  batch = abstract_batch(layout)
  steps = {}
  try:
    if optimizer is not None:
      trainer = layout.trainer(optimizer)
      state = trainer.abstract_state(trainable, layout.random_seed)
      plan_so_far = dataclasses.replace(plan_so_far, trainable_bytes=shard_bytes(
          (state.trainable, state.opt_state)))
      args = (state, frozen, batch)
      jitted = trainer.jit_train_step(jax.tree_util.tree_map(lambda x: x.sharding, state))
      train = _compile('train', jitted, args, layout, partitioner)
      steps['train'] = dataclasses.replace(train, flops=train.xla_flops + scanned_layer_flops(
          trainer.train_step, args, layout, partitioner))
      lengths = dataset_config.task_feature_lengths
      plan_so_far = dataclasses.replace(plan_so_far, formula_flops=flops.train_step_flops(
          config, dataset_config.batch_size, lengths['inputs'], prompt_length(model),
          lengths['targets']).exact)
    if decode:
      steps['decode'] = _compile('decode', *_decode_program(layout, params, batch, dataset_config),
                                 layout, partitioner)
  except jax.errors.JaxRuntimeError as e:
    refused = _resource_exhausted(e)
    if refused is None:
      raise
    return dataclasses.replace(plan_so_far, refused=refused, **steps)
  return dataclasses.replace(plan_so_far, **steps)


def _decode_program(layout: run_setup.Layout, params: Params, batch: Dict[str, Any],
                    dataset_config: inputs.DatasetConfig):
  """Eval's and infer's decode step (`evaluation.jit_predict`) and its abstract arguments."""
  jitted = evaluation.jit_predict(_decode_model(layout.model),
                                  dataset_config.task_feature_lengths['targets'],
                                  layout.shardings, layout.mesh)
  replicated = partitioning.replicated(layout.mesh)
  rng = jax.eval_shape(jax.random.key, 0)
  rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=replicated)
  return jitted, (params, batch, rng)


def candidate_meshes(num_devices: int, batch_size: int) -> Iterator[Tuple[int, int]]:
  """(data, model) splits of the devices whose data axis divides the batch, data-parallel first."""
  for model_axis in range(1, num_devices + 1):
    if num_devices % model_axis == 0 and batch_size % (num_devices // model_axis) == 0:
      yield num_devices // model_axis, model_axis


def frozen_bytes_per_device(model: EncoderDecoderModel, run_config: run_setup.RunConfig,
                            dataset_config: inputs.DatasetConfig, topology: chips.Topology,
                            mesh_shape: Tuple[int, int]) -> int:
  """The frozen weights one device holds on a mesh, from the layout alone (nothing compiled)."""
  partitioner = dataclasses.replace(run_config.partitioner, mesh_shape=tuple(mesh_shape))
  layout = run_setup.lay_out(model, dataclasses.replace(run_config, partitioner=partitioner),
                             dataset_config, devices=topology.devices())
  return shard_bytes(optim.split(layout.abstract_params(), layout.labels)[1])


def smallest_model_axis(model: EncoderDecoderModel, run_config: run_setup.RunConfig,
                        dataset_config: inputs.DatasetConfig,
                        topology: chips.Topology) -> Tuple[int, int]:
  """The mesh with the smallest model axis whose frozen weights take at most half a device.

  The other half is left to activations; the largest model axis when none is that small.
  """
  meshes = list(candidate_meshes(topology.num_devices, dataset_config.batch_size))  # ends in data 1
  for mesh_shape in meshes:
    held = frozen_bytes_per_device(model, run_config, dataset_config, topology, mesh_shape)
    if held <= topology.device_memory / 2:
      return mesh_shape
  return meshes[-1]


def first_fit(model: EncoderDecoderModel, optimizer: Optional[optax.GradientTransformation],
              run_config: run_setup.RunConfig, dataset_config: inputs.DatasetConfig,
              topology: chips.Topology, *, decode: bool = True) -> Plan:
  """The first plan that fits, from `smallest_model_axis`'s mesh up, full remat only where needed.

  Fewer compiles than `search` (one or two per size and slice where the first mesh
  fits); the last plan tried when none fits.
  """
  meshes = list(candidate_meshes(topology.num_devices, dataset_config.batch_size))
  start = meshes.index(smallest_model_axis(model, run_config, dataset_config, topology))
  for mesh_shape in meshes[start:]:
    for remat_policy in ('none', 'full'):
      result = plan(with_layers(model, remat_policy=remat_policy,
                                scan=model.module.config.scan_layers),
                    optimizer, run_config, dataset_config, topology, mesh_shape, decode=decode)
      if result.fits:
        return result
  return result


# t5.REMAT_POLICIES from the least recomputation (and most memory) to the most.
REMAT_ORDER = ('none', 'minimal', 'full')


def search(model: EncoderDecoderModel, optimizer: Optional[optax.GradientTransformation],
           run_config: run_setup.RunConfig, dataset_config: inputs.DatasetConfig,
           topology: chips.Topology, *, scans: Tuple[bool, ...] = (True, False),
           decode: bool = True) -> List[Plan]:
  """Plans every mesh split x scan on/off, with remat only where it is needed; fastest first.

  A split whose frozen weights alone exceed a device's memory is not
  compiled. Remat (recomputing in the backward pass) is tried only for a
  split that does not fit without it, the policy that recomputes least
  first (`REMAT_ORDER`): where both fit, more recomputation is only slower.
  Plans that fit come first, by roofline step time; the rest follow
  as they were tried.
  """
  plans = []
  for mesh_shape in candidate_meshes(topology.num_devices, dataset_config.batch_size):
    for scan in scans:
      for remat_policy in REMAT_ORDER:
        candidate = with_layers(model, remat_policy=remat_policy, scan=scan)
        result = plan(candidate, optimizer, run_config, dataset_config, topology, mesh_shape,
                      decode=decode)
        plans.append(result)
        if result.fits or result.frozen_bytes > topology.device_memory:
          break
  # A CPU mesh has no roofline: the least memory first.
  fitting = sorted((p for p in plans if p.fits),
                   key=lambda p: (p.roofline_seconds or 0.0, p.peak_bytes))
  return fitting + [p for p in plans if not p.fits]
