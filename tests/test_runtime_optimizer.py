"""Trainable-parameter regexes and the optimizers: frozen parameters get no update and no state."""

import flax
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


def test_the_two_sub_trees_split_the_leaves_and_merge_back_into_the_parameters():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  trainable, frozen = optimizer.split(PARAMS, labels)
  assert list(flax.traverse_util.flatten_dict(trainable, sep='/')) == [
      'encoder/prompt/prompt/prompt']
  assert sorted(flax.traverse_util.flatten_dict(frozen, sep='/')) == sorted(FROZEN_PATHS)
  merged = optimizer.merge(trainable, frozen)
  assert jax.tree_util.tree_structure(merged) == jax.tree_util.tree_structure(PARAMS)
  assert all(a is b for a, b in zip(jax.tree_util.tree_leaves(merged),
                                     jax.tree_util.tree_leaves(PARAMS)))


def test_the_optimizer_of_the_trainable_sub_tree_names_no_frozen_parameter():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  trainable, _ = optimizer.split(PARAMS, labels)
  state = jax.eval_shape(optimizer.for_trainable(optimizer.adafactor(), labels).init, trainable)
  paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(
      state, is_leaf=lambda x: x is None)[0]]
  frozen_keys = {key for path in FROZEN_PATHS for key in path.split('/')} - {'encoder'}
  assert paths and not [path for path in paths if any(key in path for key in frozen_keys)]
  prompt_size = leaf(PARAMS, 'encoder/prompt/prompt/prompt').size
  # The prompt's second moment, plus scalars and the [1] placeholders of unused factors.
  assert sum(x.size for x in state_arrays(state)) < 2 * prompt_size


def test_the_masked_optimizer_of_the_whole_tree_keeps_no_state_for_frozen_leaves():
  labels = optimizer.trainable_labels(PARAMS, optimizer.PROMPT_ONLY)
  state = jax.eval_shape(optimizer.masked(optimizer.adafactor(), labels).init, PARAMS)
  prompt_size = leaf(PARAMS, 'encoder/prompt/prompt/prompt').size
  assert sum(x.size for x in state_arrays(state)) < 2 * prompt_size
  assert max(x.size for x in state_arrays(state)) == prompt_size


def test_frozen_leaves_get_zero_updates_from_the_masked_optimizer():
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


def _bank_step(tx, bank, grads, **extra):
  state = tx.init({'bank': bank})
  updates, new_state = tx.update({'bank': grads}, state, {'bank': bank}, **extra)
  return updates['bank'], state, new_state


# A bank of 3 prompts [3, 4, 8] whose gradients differ in scale by 100x, so that Adafactor's
# update clipping (RMS over the whole leaf) would mix them if the bank were one leaf.
BANK = jnp.linspace(-1.0, 1.0, 3 * 4 * 8).reshape(3, 4, 8)
BANK_GRADS = jnp.cos(jnp.arange(3 * 4 * 8.0)).reshape(3, 4, 8) * jnp.array([1.0, 100.0, 0.01])[
    :, None, None]


def test_each_prompt_of_a_bank_gets_the_update_of_its_own_optimizer():
  base = optimizer.adafactor(learning_rate=0.3, multiply_by_parameter_scale=True)
  updates, _, _ = _bank_step(optimizer.per_row(base), BANK, BANK_GRADS)
  for k in range(3):
    alone, _, _ = _bank_step(base, BANK[k], BANK_GRADS[k])
    np.testing.assert_allclose(updates[k], alone, rtol=1e-6)
  together, _, _ = _bank_step(base, BANK, BANK_GRADS)  # what one optimizer would have done
  assert not np.allclose(together, updates, rtol=1e-3)


def test_a_prompt_left_out_of_a_step_keeps_its_update_and_optimizer_state_unchanged():
  tx = optimizer.per_row(optimizer.adafactor())
  trained = jnp.array([True, False, True])
  updates, state, new_state = _bank_step(tx, BANK, BANK_GRADS, rows_trained=trained)
  assert not np.any(updates[1]) and np.all(updates[0] != 0) and np.all(updates[2] != 0)
  for old, new in zip(state_arrays(state), state_arrays(new_state)):
    np.testing.assert_array_equal(new[1], old[1])  # step count and second moments included
  counts = [new for new in state_arrays(new_state) if new.dtype == jnp.int32]
  assert counts and all(list(c) == [1, 0, 1] for c in counts)
  assert float(optimizer.current_learning_rate(new_state)) == pytest.approx(0.3)


def test_a_bank_beside_other_trainable_leaves_gets_per_prompt_optimizers_and_they_their_own():
  embedding = jnp.linspace(-1.0, 1.0, 300 * 8).reshape(300, 8)
  params = {'encoder': {'prompt': {'prompt': {'prompt': BANK}}},
            'decoder': {'kernel': jnp.ones((8, 8))},
            'token_embedder': {'embedding': embedding}}
  labels = optimizer.trainable_labels(params, optimizer.PROMPT_ONLY + ('token_embedder/.*',))
  trainable, _ = optimizer.split(params, labels)
  tx = optimizer.for_trainable(optimizer.adafactor(), labels,
                               per_row_paths=('encoder/prompt/prompt/prompt',))
  grads = {'encoder': {'prompt': {'prompt': {'prompt': BANK_GRADS}}},
           'token_embedder': {'embedding': jnp.cos(embedding)}}
  updates, state = tx.update(grads, tx.init(trainable), trainable,
                             rows_trained=jnp.array([True, True, False]))
  prompt_updates = leaf(updates, 'encoder/prompt/prompt/prompt')
  alone, _, _ = _bank_step(optimizer.adafactor(), BANK[0], BANK_GRADS[0])
  np.testing.assert_allclose(prompt_updates[0], alone, rtol=1e-6)
  assert not np.any(prompt_updates[2])
  embedding_alone, _, _ = _bank_step(optimizer.adafactor(), embedding, jnp.cos(embedding))
  np.testing.assert_allclose(leaf(updates, 'token_embedder/embedding'), embedding_alone, rtol=1e-6)
  assert 'kernel' not in str(jax.tree_util.tree_structure(state))  # nothing for the frozen leaf
