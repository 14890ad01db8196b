"""One run's set-up, built once for train, eval, infer and the benchmark.

The sequence every run starts with: the mesh, the model's input shapes, the
parameter shardings, which parameters train (the layout), then the initial
parameters (frozen model from INITIAL_CHECKPOINT_PATH, the rest initialised)
and the trainable/frozen split. Everything that can be wrong with the
configuration fails here, before a run writes anything. Reads no data and
writes nothing. The planner stops after the layout and takes the initial
parameters' shapes only, so what it compiles is laid out as runs are.
"""

import dataclasses
import functools
from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from prompt_tuning.runtime import initial_params, inputs, partitioning
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel
from prompt_tuning.runtime.trainer import Trainer, TrainState

Params = Any


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """What every command is given besides the model and its data.

  Attributes:
    partitioner: the mesh and the logical-axis rules.
    trainable_regexes: TRAINABLE_REGEXES, full-match regexes over '/'-joined parameter paths.
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH of the frozen model; None initialises
      it at random (tests, the demo's own pre-training).
    frozen_dtype: FROZEN_DTYPE, the dtype frozen parameters are held in.
    random_seed: RANDOM_SEED, for the initializers and dropout.
  """
  partitioner: partitioning.Partitioner = partitioning.Partitioner()
  trainable_regexes: Sequence[str] = optim.PROMPT_ONLY
  initial_checkpoint_path: Optional[str] = None
  frozen_dtype: Any = jnp.float32
  random_seed: int = 0


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a run's parameters live and which of them train; no parameter is made.

  Attributes:
    model: the model.
    mesh: the device mesh.
    input_shapes: global [B, length] shapes of the model features.
    shardings: a NamedSharding per parameter.
    labels: 'trainable' or 'frozen' per parameter.
    frozen_dtype: FROZEN_DTYPE, the dtype frozen parameters are held in.
    random_seed: RANDOM_SEED, for the initializers and the training state's dropout key.
  """
  model: EncoderDecoderModel
  mesh: Mesh
  input_shapes: Mapping[str, tuple]
  shardings: Params
  labels: Params
  frozen_dtype: Any
  random_seed: int

  def trainer(self, optimizer: optax.GradientTransformation) -> Trainer:
    """The train step and state builder of `optimizer` (masked to the trainable parameters)."""
    return Trainer(self.model, optimizer, self.labels, self.shardings, self.mesh)

  def abstract_params(self) -> Params:
    """The initial parameters as `jax.ShapeDtypeStruct`s with their shardings: traced, not made.

    Their dtypes are those `initial_params` gives (frozen ones FROZEN_DTYPE, trainable ones
    float32), whatever INITIAL_CHECKPOINT_PATH holds: it casts what it reads.
    """
    shapes = jax.eval_shape(functools.partial(
        initial_params.initial_params, self.model, dict(self.input_shapes), self.shardings,
        self.labels, None, self.frozen_dtype, self.random_seed))
    return jax.tree_util.tree_map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
        shapes, self.shardings)


@dataclasses.dataclass(frozen=True)
class RunSetup(Layout):
  """A laid-out run and its parameters at the start.

  Attributes (besides the layout's):
    trainable: the trainable sub-tree of the initial parameters.
    frozen: the frozen sub-tree.
  """
  trainable: Params = None
  frozen: Params = None

  def initial_state(self, trainer: Trainer) -> TrainState:
    """The step-0 train state (trainable parameters and `trainer`'s optimizer state), sharded."""
    return trainer.create_state(self.trainable, self.random_seed)

  def params(self, trainable: Optional[Params] = None) -> Params:
    """The full parameter tree: `trainable` (by default the initial one) with the frozen ones."""
    return optim.merge(self.trainable if trainable is None else trainable, self.frozen)


def check_dataset(model: EncoderDecoderModel, dataset_config: inputs.DatasetConfig,
                  mesh: Mesh) -> None:
  """The data fits the run: the batch splits over the mesh, and the vocabulary is the task's."""
  partitioning.check_batch_size(dataset_config.batch_size, mesh)
  inputs.check_vocabulary(dataset_config, model.vocabulary)
  with inputs.reading(dataset_config):  # checks DATA_SOURCE and DATA_DIR
    pass


def lay_out(model: EncoderDecoderModel, config: RunConfig,
            dataset_config: Optional[inputs.DatasetConfig] = None, *,
            input_shapes: Optional[Dict[str, tuple]] = None,
            devices: Optional[Sequence[jax.Device]] = None) -> Layout:
  """The mesh, input shapes, shardings and trainable labels of a run; makes no parameter.

  Args:
    model: the model.
    config: the run's settings.
    dataset_config: the data the run reads: checked against the mesh and the
      model, and giving the input shapes.
    input_shapes: the input shapes, for a run without a dataset (the benchmark).
    devices: the mesh's devices (default: all; the planner's are compile-only).
  """
  mesh = config.partitioner.make_mesh(devices)
  if dataset_config is not None:
    check_dataset(model, dataset_config, mesh)
    input_shapes = inputs.model_feature_shapes(dataset_config)
  boxed = model.abstract_variables(input_shapes)['params']
  return Layout(model=model, mesh=mesh, input_shapes=input_shapes,
                shardings=config.partitioner.shardings(mesh, boxed),
                labels=optim.trainable_labels(boxed, config.trainable_regexes),
                frozen_dtype=config.frozen_dtype, random_seed=config.random_seed)


def set_up(model: EncoderDecoderModel, config: RunConfig,
           dataset_config: Optional[inputs.DatasetConfig] = None, *,
           input_shapes: Optional[Dict[str, tuple]] = None,
           devices: Optional[Sequence[jax.Device]] = None) -> RunSetup:
  """Lays out the run and makes its initial parameters; raises before anything is written.

  Arguments as `lay_out`'s.
  """
  layout = lay_out(model, config, dataset_config, input_shapes=input_shapes, devices=devices)
  params = initial_params.initial_params(model, layout.input_shapes, layout.shardings,
                                         layout.labels, config.initial_checkpoint_path,
                                         config.frozen_dtype, config.random_seed)
  trainable, frozen = optim.split(params, layout.labels)
  return RunSetup(**{f.name: getattr(layout, f.name) for f in dataclasses.fields(Layout)},
                  trainable=trainable, frozen=frozen)
