"""What trains under T5X: the prompt only, by T5X's MultiOptimizer or the project's optax optimizer.

The paper's optimizer is T5X's Adafactor (decay rate 0.8, no parameter
scaling, weight decay 1e-5, constant learning rate 0.3 from the trainer)
applied to the parameters whose '/'-joined path matches a regex; the gin
files in `gin/t5x/` set those values. `optax_prompt_only` runs the project's
own optax optimizer (`runtime.optimizer`) inside T5X's `OptaxWrapper`
instead. Either way every other parameter gets no optimizer state and is
never changed.
"""

import re
from typing import Optional, Sequence

import flax
import jax
import optax
from flax import traverse_util
from t5x import adafactor
from t5x import optimizers

from prompt_tuning.runtime import optimizer as project_optimizer

# Adafactor factorisation of the prompt's logical axes: a `[P, H]` prompt
# (rank 2) falls back to Adafactor's size heuristic, as optax's Adafactor
# does; a bank `[K, P, H]` is factored per prompt.
PROMPT_FACTOR_RULES = {
    'prompt': adafactor.FactorDim.ROW,
    'prompt_embed': adafactor.FactorDim.COLUMN,
    'prompt_bank': adafactor.FactorDim.BATCH,
}


def logical_factor_rules():
  """T5X's standard Adafactor factor rules plus those of the prompt axes."""
  return {**adafactor.standard_logical_factor_rules(), **PROMPT_FACTOR_RULES}


def trainable(regexes: Sequence[str] = project_optimizer.PROMPT_ONLY
              ) -> traverse_util.ModelParamTraversal:
  """The parameters whose '/'-joined path (no leading '/') fully matches one of `regexes`."""
  patterns = [re.compile(r) for r in regexes]
  return traverse_util.ModelParamTraversal(
      lambda path, _: any(p.fullmatch(path.lstrip('/')) for p in patterns))


def prompt_only(optimizer_def: optimizers.OptimizerDef,
                regexes: Sequence[str] = project_optimizer.PROMPT_ONLY
                ) -> optimizers.MultiOptimizer:
  """`optimizer_def` on the parameters `regexes` match (the prompt); the rest stay frozen."""
  return optimizers.MultiOptimizer(((trainable(regexes), optimizer_def),))


def _replicated_leaves(state, params_axes):
  """Partition rule of an optax state kept whole on every device (the prompt's, or scalars)."""
  del params_axes
  return jax.tree.map(lambda _: None, state)


def _inject_stateful_hyperparams(state, params_axes):
  return state._replace(
      count=None, hyperparams=jax.tree.map(lambda _: None, state.hyperparams),
      hyperparams_states=jax.tree.map(lambda _: None, state.hyperparams_states),
      inner_state=optimizers.OptaxStatePartitionRules.derive_optax_logical_axes(
          state.inner_state, params_axes))


def _register_partition_rules() -> None:
  """Teaches T5X's OptaxWrapper the states of the project's optax Adafactor.

  T5X partitions optimizer states by a table of known optax state types;
  optax's Adafactor state and `inject_hyperparams`' stateful variant are
  missing from it. Both hold the prompt's statistics, which are replicated.
  """
  rules = optimizers.OptaxStatePartitionRules._RULES  # pylint: disable=protected-access
  rules.setdefault(optax.InjectStatefulHyperparamsState, _inject_stateful_hyperparams)
  rules.setdefault(optax.FactoredState, _replicated_leaves)


def optax_prompt_only(base: Optional[optax.GradientTransformation] = None,
                      regexes: Sequence[str] = project_optimizer.PROMPT_ONLY
                      ) -> optimizers.OptaxWrapper:
  """The project's masked optax optimizer (default: its paper Adafactor) as a T5X optimizer.

  The learning rate is the optax optimizer's own; T5X's trainer schedule is not used.
  """
  base = base or project_optimizer.adafactor()

  def labels(params):
    # T5X hands the optimizer FrozenDicts; the labels must have the same tree structure.
    tree = project_optimizer.trainable_labels(flax.core.unfreeze(params), regexes)
    return flax.core.freeze(tree) if isinstance(params, flax.core.FrozenDict) else tree

  _register_partition_rules()
  return optimizers.OptaxWrapper(project_optimizer.masked(base, labels))
