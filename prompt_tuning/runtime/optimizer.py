"""What trains and how: path regexes pick the trainable parameters; optax updates them alone.

The parameter tree is split into two complementary sub-trees: `trainable`
holds the matched arrays and `frozen` the rest. Gradients are taken of
`trainable` only, so the frozen weights are closed over and never
differentiated, and the optimizer (`for_trainable`) sees the trainable
sub-tree alone: its state, and so a checkpoint, names no frozen parameter.
A prompt bank `[K, P, H]` gets one optimizer per prompt (`per_row`), so that
Adafactor's update clipping and statistics never mix prompts, and a prompt
that no example of a batch used is left as it was. Inside T5X, which hands
the optimizer the whole tree, `masked` gives frozen leaves no update and no
state instead.
"""

import re
from typing import Any, Optional, Sequence, Tuple, Union

import flax
import jax
import jax.numpy as jnp
import optax

from prompt_tuning.errors import UserError
from prompt_tuning.models import prompted

Params = Any
Schedule = Union[float, optax.Schedule]

PROMPT_ONLY = (prompted.PROMPT_PATH,)
ALL_PARAMETERS = (r'.*',)


class TrainableParamsError(UserError, ValueError):
  """The trainable-parameter regexes match nothing."""


def trainable_labels(params: Params, regexes: Sequence[str]) -> Params:
  """'trainable' or 'frozen' for every leaf, by full-match of any regex on its '/'-joined path."""
  patterns = [re.compile(r) for r in regexes]
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  labels = {path: 'trainable' if any(p.fullmatch(path) for p in patterns) else 'frozen'
            for path in flat}
  if 'trainable' not in labels.values():
    raise TrainableParamsError(f'The trainable regexes {list(regexes)} match no parameter; paths '
                               f'look like {sorted(flat)[:3]}.')
  return flax.traverse_util.unflatten_dict(labels, sep='/')


def split(params: Params, labels: Params) -> Tuple[Params, Params]:
  """The two complementary sub-trees of `params`: (its trainable leaves, its frozen leaves)."""
  flat_labels = flax.traverse_util.flatten_dict(labels)
  flat = flax.traverse_util.flatten_dict(params)
  pick = lambda wanted: flax.traverse_util.unflatten_dict(
      {path: x for path, x in flat.items() if flat_labels[path] == wanted})
  return pick('trainable'), pick('frozen')


def merge(trainable: Params, frozen: Params) -> Params:
  """The full parameter tree from its two complementary sub-trees."""
  return flax.traverse_util.unflatten_dict({**flax.traverse_util.flatten_dict(frozen),
                                            **flax.traverse_util.flatten_dict(trainable)})


def adafactor(learning_rate: Schedule = 0.3, decay_rate: float = 0.8,
              multiply_by_parameter_scale: bool = False, weight_decay_rate: Optional[float] = 1e-5,
              clipping_threshold: Optional[float] = 1.0) -> optax.GradientTransformation:
  """Adafactor with the paper's settings: constant 0.3, decay 0.8, no parameter scaling, wd 1e-5."""
  # inject_hyperparams keeps the current learning rate in the state, for the summaries.
  static = ('min_dim_size_to_factor', 'decay_rate', 'decay_offset', 'multiply_by_parameter_scale',
            'clipping_threshold', 'momentum', 'dtype_momentum', 'weight_decay_rate', 'eps',
            'factored')
  return optax.inject_hyperparams(optax.adafactor, static_args=static)(
      learning_rate=learning_rate, decay_rate=decay_rate,
      multiply_by_parameter_scale=multiply_by_parameter_scale,
      weight_decay_rate=weight_decay_rate, clipping_threshold=clipping_threshold)


def warmup_then_decay(peak_value: float, warmup_steps: int = 0, decay_steps: int = 0,
                      end_value: float = 0.0) -> optax.Schedule:
  """Linear warm-up, then cosine decay (0 decay steps keeps the peak): optax's own schedules."""
  if not decay_steps:
    return optax.join_schedules([optax.linear_schedule(0.0, peak_value, warmup_steps),
                                 optax.constant_schedule(peak_value)], [warmup_steps])
  return optax.warmup_cosine_decay_schedule(0.0, peak_value, warmup_steps,
                                            warmup_steps + decay_steps, end_value)


def per_row(base: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """`base` run separately on each row of `[K, ...]` leaves: K optimizers with K states.

  The update takes `rows_trained` ([K] bool, optional): a row left out keeps its
  optimizer state (step count included) and gets a zero update, exactly as if
  that step had not happened for it.
  """

  def init(params):
    return jax.vmap(base.init)(params)

  def update(updates, state, params=None, *, rows_trained: Optional[jax.Array] = None, **extra):
    del extra
    new_updates, new_state = jax.vmap(base.update)(updates, state, params)
    if rows_trained is None:
      return new_updates, new_state

    def where_trained(new, old):
      return jnp.where(rows_trained.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    new_state = jax.tree_util.tree_map(where_trained, new_state, state)
    new_updates = jax.tree_util.tree_map(lambda u: where_trained(u, jnp.zeros_like(u)),
                                         new_updates)
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init, update)


def for_trainable(base: optax.GradientTransformation, labels: Params,
                  per_row_paths: Sequence[str] = ()) -> optax.GradientTransformation:
  """The optimizer of the trainable sub-tree (`split(params, labels)[0]`).

  `base` on every trainable leaf, except those at `per_row_paths` ('/'-joined:
  prompt banks), which get `per_row(base)`, whose update takes `rows_trained`.
  """
  trainable = [path for path, label in flax.traverse_util.flatten_dict(labels, sep='/').items()
               if label == 'trainable']
  banks = [path for path in trainable if path in per_row_paths]
  if not banks:
    return base
  if len(banks) == len(trainable):
    return per_row(base)
  groups = {path: 'per_row' if path in banks else 'each' for path in trainable}
  return optax.multi_transform({'each': base, 'per_row': per_row(base)},
                               flax.traverse_util.unflatten_dict(groups, sep='/'))


def masked(base: optax.GradientTransformation, labels: Any) -> optax.GradientTransformation:
  """`base` on the trainable leaves of the whole tree; frozen leaves get no update and no state.

  `labels` is a tree of 'trainable'/'frozen', or a function of the parameters
  that returns one (T5X's optimizer, which sees the whole tree).
  """
  return optax.multi_transform({'trainable': base, 'frozen': optax.set_to_zero()}, labels)


def current_learning_rate(opt_state: optax.OptState) -> Optional[jax.Array]:
  """The learning rate of the last update, as recorded by `optax.inject_hyperparams`.

  Per-row optimizers each record theirs (`[K]`); their mean is returned.
  """
  hyperparams = optax.tree_utils.tree_get_all_with_path(opt_state, 'hyperparams')
  if not hyperparams:
    return None
  return jnp.mean(hyperparams[0][1]['learning_rate'])
