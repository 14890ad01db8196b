"""The train state and the train step, jitted once with explicit shardings.

The frozen parameters are an argument of the step, never differentiated and
never donated; only the trainable view, its optimizer state, the step and
the RNG make up the state that changes and is checkpointed.
"""

from typing import Any, Dict, Tuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from prompt_tuning.models import prompted
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime import partitioning
from prompt_tuning.runtime.model import EncoderDecoderModel

Array = jax.Array
Params = Any


@flax.struct.dataclass
class TrainState:
  """What changes during training.

  Attributes:
    step: scalar int32, the number of updates applied.
    trainable: the trainable sub-tree of the parameters (see `optimizer.split`).
    opt_state: its optimizer state (which names no frozen parameter).
    rng: raw uint32 key data `[2]`, for dropout.
  """
  step: Array
  trainable: Params
  opt_state: optax.OptState
  rng: Array


class Trainer:
  """Builds the train state and the jitted train step for one model, optimizer and mesh."""

  def __init__(self, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
               labels: Params, param_shardings: Params, mesh: Mesh):
    self.model = model
    self.mesh = mesh
    # A bank's prompts have an optimizer each: a prompt no example used is left as it was.
    self.tx = optim.for_trainable(
        optimizer, labels, per_row_paths=(prompted.PROMPT_PATH,) if model.prompt_bank_size else ())
    self.trainable_shardings, self.frozen_shardings = optim.split(param_shardings, labels)
    self._replicated = partitioning.replicated(mesh)

  def _jit_create_state(self, seed: int):
    def create(trainable):
      return TrainState(step=jnp.array(0, jnp.int32), trainable=trainable,
                        opt_state=self.tx.init(trainable),
                        rng=jax.random.key_data(jax.random.key(seed)))

    return jax.jit(create, in_shardings=(self.trainable_shardings,))

  def create_state(self, trainable: Params, seed: int) -> TrainState:
    """A step-0 state around loaded or initialised trainable parameters.

    Jitted, so the optimizer state is laid out like the parameters it
    tracks; the result's shardings are the state's shardings from then on.
    """
    return self._jit_create_state(seed)(trainable)

  def abstract_state(self, trainable: Params, seed: int) -> TrainState:
    """`create_state`'s result as `jax.ShapeDtypeStruct`s, for abstract `trainable` parameters.

    The shardings are those the compiled `create_state` gives its result,
    found by compiling it, not running it.
    """
    create = self._jit_create_state(seed)
    shardings = create.lower(trainable).compile().output_shardings
    return jax.tree_util.tree_map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
        jax.eval_shape(create, trainable), shardings)

  def train_step(self, state: TrainState, frozen: Params,
                 batch: Dict[str, Array]) -> Tuple[TrainState, Dict[str, Array]]:
    """One update of the trainable parameters. Frozen weights are closed over, not differentiated."""
    rng, dropout_rng = jax.random.split(jax.random.wrap_key_data(state.rng))

    def loss_of_trainable(trainable):
      return self.model.loss_fn(optim.merge(trainable, frozen), batch, dropout_rng)

    (_, metrics), grads = jax.value_and_grad(loss_of_trainable, has_aux=True)(state.trainable)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.trainable,
                                        **self._rows_trained(batch))
    trainable = optax.apply_updates(state.trainable, updates)
    learning_rate = optim.current_learning_rate(opt_state)
    if learning_rate is not None:
      metrics['learning_rate'] = learning_rate
    # Checked by the loop before anything is saved: a diverged run must not be checkpointed.
    metrics['finite'] = jnp.isfinite(metrics['loss']) & jnp.all(jnp.array(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(trainable)]))
    new_state = TrainState(step=state.step + 1, trainable=trainable, opt_state=opt_state,
                           rng=jax.random.key_data(rng))
    return new_state, metrics

  def _rows_trained(self, batch: Dict[str, Array]) -> Dict[str, Array]:
    """For a bank, `rows_trained` [K]: the prompts that some example with a weighted target used."""
    if not self.model.prompt_bank_size:
      return {}
    weights = batch.get('decoder_loss_weights', batch['decoder_target_tokens'] > 0)
    used = jnp.any(weights > 0, axis=-1).astype(jnp.int32)
    counts = jax.ops.segment_sum(used, batch['prompt_index'], self.model.prompt_bank_size)
    return {'rows_trained': counts > 0}

  def jit_train_step(self, state_shardings: TrainState):
    """The train step compiled once, with explicit in/out shardings and the state donated."""
    batch_sharding = partitioning.data_sharding(self.mesh)
    return jax.jit(self.train_step,
                   in_shardings=(state_shardings, self.frozen_shardings, batch_sharding),
                   out_shardings=(state_shardings, self._replicated),
                   donate_argnums=(0,))
