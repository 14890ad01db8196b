"""Trainable-parameter regexes and the masked optimizer: frozen leaves get no update, no state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.runtime import optimizer

PARAMS = {
    'encoder': {'prompt': {'prompt': {'prompt': jnp.full((4, 8), 0.5)}},
                'layers_0': {'mlp': {'wi_0': {'kernel': jnp.ones((256, 512))}}}},
    'token_embedder': {'embedding': jnp.ones((300, 8))},
}
FROZEN_PATHS = ('encoder/layers_0/mlp/wi_0/kernel', 'token_embedder/embedding')


def leaf(tree, path):
  for key in path.split('/'):
    tree = tree[key]
  return tree


def state_arrays(state):
  return [x for x in jax.tree_util.tree_leaves(state) if hasattr(x, 'shape')]


def test_the_default_regex_picks_the_prompt_only():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  assert leaf(labels, 'encoder/prompt/prompt/prompt') == 'trainable'
  assert all(leaf(labels, path) == 'frozen' for path in FROZEN_PATHS)


def test_regexes_must_match_a_whole_path():
  labels = optimizer.trainable_labels(PARAMS, [r'encoder/prompt', r'.*/mlp/.*'])
  assert leaf(labels, 'encoder/prompt/prompt/prompt') == 'frozen'
  assert leaf(labels, 'encoder/layers_0/mlp/wi_0/kernel') == 'trainable'


def test_regexes_that_match_nothing_are_a_one_line_error_naming_them():
  with pytest.raises(optimizer.TrainableParamsError) as error:
    optimizer.trainable_labels(PARAMS, [r'encoder/promt'])
  message = str(error.value)
  assert '\n' not in message and "'encoder/promt'" in message
  assert 'encoder/prompt/prompt/prompt' in message


def test_split_views_merge_back_into_the_parameters():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  trainable, frozen = optimizer.split(PARAMS, labels)
  assert leaf(trainable, 'token_embedder/embedding') is None
  assert leaf(frozen, 'encoder/prompt/prompt/prompt') is None
  merged = optimizer.merge(trainable, frozen)
  assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(PARAMS)
  assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(merged),
                                     jax.tree_util.tree_leaves(PARAMS)))


@pytest.mark.parametrize('view', ['whole tree', 'trainable view'])
def test_frozen_leaves_get_no_optimizer_state(view):
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  tx = optimizer.masked(optimizer.adafactor(), labels)
  params = PARAMS if view == 'whole tree' else optimizer.split(PARAMS, labels)[0]
  state = jax.eval_shape(tx.init, params)
  prompt_size = leaf(PARAMS, 'encoder/prompt/prompt/prompt').size
  # The prompt's second moment, plus scalars and the [1] placeholders of unused factors.
  assert sum(x.size for x in state_arrays(state)) < 2 * prompt_size
  assert max(x.size for x in state_arrays(state)) == prompt_size


def test_frozen_leaves_get_zero_updates():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  tx = optimizer.masked(optimizer.adafactor(), labels)
  grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  assert all(not np.any(leaf(updates, path)) for path in FROZEN_PATHS)
  assert np.all(np.asarray(leaf(updates, 'encoder/prompt/prompt/prompt')) != 0)


def test_adafactor_starts_at_the_papers_rate_and_records_it_for_the_summaries():
  tx = optimizer.adafactor()
  params = {'p': jnp.zeros((3, 2))}
  _, state = tx.update({'p': jnp.ones((3, 2))}, tx.init(params), params)
  assert float(optimizer.current_learning_rate(state)) == pytest.approx(0.3)


def test_warmup_then_constant_and_warmup_then_cosine():
  constant = optimizer.warmup_then_decay(1.0, warmup_steps=10)
  assert [float(constant(s)) for s in (0, 5, 10, 1000)] == pytest.approx([0.0, 0.5, 1.0, 1.0])
  cosine = optimizer.warmup_then_decay(1.0, warmup_steps=10, decay_steps=100, end_value=0.1)
  assert [float(cosine(s)) for s in (5, 10, 110)] == pytest.approx([0.5, 1.0, 0.1])
