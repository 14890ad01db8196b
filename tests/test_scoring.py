"""Rank classification: candidate log-likelihoods, one encoder pass per example, the argmax."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import scoring
from prompt_tuning.models import prompted, t5

MODEL = prompted.PromptedT5(t5.config_for_size('tiny'),
                            prompt_config=prompted.PromptConfig(length=3, num_prompts=2))
INPUTS = np.array([[5, 6, 7, 8, 1], [9, 10, 1, 0, 0], [11, 1, 0, 0, 0]], np.int32)
PROMPT_INDEX = np.array([1, 0, 1], np.int32)
# Verbalizers of one to three tokens, EOS-terminated and 0-padded; enough of them that the
# examples prefer different ones.
CANDIDATES = np.array([[20, 1, 0, 0], [21, 31, 1, 0], [22, 32, 32, 1], [23, 1, 0, 0],
                       [24, 34, 1, 0], [25, 35, 35, 1], [26, 1, 0, 0], [27, 37, 1, 0]], np.int32)

score = jax.jit(scoring.score_candidates, static_argnums=0)
classify = jax.jit(scoring.rank_classify, static_argnums=0)


@pytest.fixture(scope='module')
def params():
  init = functools.partial(MODEL.init, enable_dropout=False, prompt_index=PROMPT_INDEX)
  # A seed whose random model ranks the candidates differently per example, with margins
  # (>= 0.08 nats) far above float error.
  return jax.jit(init)(jax.random.key(5), INPUTS, CANDIDATES[:3], CANDIDATES[:3])['params']


@pytest.fixture(scope='module')
def independent_scores(params):
  """[B, C]: each candidate scored by its own full forward pass (encoder included)."""
  @jax.jit
  def one(candidate):
    targets = jnp.broadcast_to(candidate, (len(INPUTS), len(candidate)))
    logits = MODEL.apply({'params': params}, INPUTS, scoring.shift_right(targets), targets,
                         enable_dropout=False, prompt_index=PROMPT_INDEX)
    return scoring.sequence_log_likelihood(logits, targets)
  return np.stack([one(c) for c in CANDIDATES], axis=1)


def test_candidate_scores_equal_independent_teacher_forced_sums(params, independent_scores):
  scores = score(MODEL, params, INPUTS, CANDIDATES, prompt_index=PROMPT_INDEX)
  np.testing.assert_allclose(scores, independent_scores, rtol=1e-5)


def encoder_batches(params, candidates):
  """Traces scoring and returns the batch size of every encoder call in the traced graph."""
  batches = []

  def count(next_fun, args, kwargs, context):
    if isinstance(context.module, t5.Encoder) and context.method_name == '__call__':
      batches.append(args[0].shape[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(count):
    jax.eval_shape(functools.partial(scoring.score_candidates, MODEL), params, INPUTS, candidates,
                   prompt_index=PROMPT_INDEX)
  return batches


def test_the_encoder_runs_once_on_the_batch_whatever_the_number_of_candidates(params):
  assert encoder_batches(params, CANDIDATES[:1]) == [len(INPUTS)]
  assert encoder_batches(params, CANDIDATES) == [len(INPUTS)]
  many = np.tile(CANDIDATES, (5, 1))
  assert encoder_batches(params, many) == [len(INPUTS)]


def test_the_candidates_share_one_copy_of_the_encoder_output_in_one_decoder_pass(params):
  """Cross-attention keys and values come from [B, L, H], whatever the number of candidates."""
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and context.module.name == 'encoder_decoder_attention':
      calls.append((args[0].shape, args[1].shape))  # queries, keys/values
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(functools.partial(scoring.score_candidates, MODEL), params, INPUTS, CANDIDATES,
                   prompt_index=PROMPT_INDEX)
  length = len(CANDIDATES) * CANDIDATES.shape[1]
  assert calls and all(queries[:2] == (len(INPUTS), length) and keys[0] == len(INPUTS)
                       for queries, keys in calls)


def test_rank_classification_picks_the_most_likely_candidate(params, independent_scores):
  best, scores = classify(MODEL, params, INPUTS, CANDIDATES, prompt_index=PROMPT_INDEX)
  np.testing.assert_array_equal(best, independent_scores.argmax(axis=1))
  np.testing.assert_allclose(scores, independent_scores, rtol=1e-5)
  assert len(set(best.tolist())) > 1, 'the test needs examples that prefer different candidates'


def test_per_example_candidates_with_empty_slots(params, independent_scores):
  """Each example ranks its own choices; all-padding rows are empty slots, never picked."""
  order = np.array([[3, 0, 1], [1, 2, 0], [2, 1, 3]])
  candidates = CANDIDATES[order]
  candidates[0, 2] = 0
  best, scores = classify(MODEL, params, INPUTS, candidates, prompt_index=PROMPT_INDEX)
  expected = np.take_along_axis(independent_scores, order, axis=1)
  expected[0, 2] = -np.inf
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
  np.testing.assert_array_equal(best, expected.argmax(axis=1))


def test_sequence_log_likelihood_ignores_padding():
  logits = jnp.log(jnp.array([[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]]))
  targets = jnp.array([[2, 1, 0]])
  np.testing.assert_allclose(scoring.sequence_log_likelihood(logits, targets),
                             [np.log(0.5) + np.log(0.3)], rtol=1e-6)
  changed = logits.at[0, 2].set(jnp.array([5.0, -3.0, 0.0]))
  np.testing.assert_allclose(scoring.sequence_log_likelihood(changed, targets),
                             scoring.sequence_log_likelihood(logits, targets))


def test_candidates_of_the_wrong_batch_size_are_refused(params):
  with pytest.raises(ValueError, match=r'candidate_tokens must be .*B=3.*got shape \(2, 8, 4\)'):
    scoring.score_candidates(MODEL, params, INPUTS, np.stack([CANDIDATES] * 2),
                             prompt_index=PROMPT_INDEX)
