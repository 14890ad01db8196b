"""The training loss against hand computations: z-loss, label smoothing, padding, normalisation."""

import numpy as np
import pytest

from prompt_tuning.runtime import losses

# [B=2, T=3, V=4] logits; the second example has one padding position.
LOGITS = np.array([[[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.0, 1.0, 1.0]],
                   [[-0.5, 4.0, 0.0, 1.0], [0.0, 0.0, 2.5, 0.3], [9.0, -9.0, 5.0, 0.0]]],
                  np.float32)
TARGETS = np.array([[0, 2, 3], [1, 3, 0]], np.int32)
WEIGHTS = np.array([[1, 1, 1], [1, 1, 0]], np.float32)


def log_softmax(logits):
  z = np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  return logits - z, z[..., 0]


def hand_token_loss(logits, targets, z_loss, smoothing):
  """T5X's cross-entropy, written out: -sum(q log p) - H(q) + z_loss * log(Z)^2."""
  vocab = logits.shape[-1]
  log_p, log_z = log_softmax(logits.astype(np.float64))
  low = smoothing / (vocab - 1)
  q = np.full(log_p.shape, low)
  np.put_along_axis(q, targets[..., None], 1.0 - smoothing, axis=-1)
  entropy = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=-1)
  return -np.sum(q * log_p, axis=-1) - entropy + z_loss * log_z**2


@pytest.mark.parametrize('z_loss, smoothing', [(0.0, 0.0), (1e-4, 0.0), (0.1, 0.0), (1e-4, 0.1),
                                               (0.0, 0.3)])
def test_token_loss_matches_a_hand_computation(z_loss, smoothing):
  token_loss, token_z_loss = losses.cross_entropy_with_logits(LOGITS, TARGETS, z_loss, smoothing)
  np.testing.assert_allclose(token_loss, hand_token_loss(LOGITS, TARGETS, z_loss, smoothing),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(token_z_loss, z_loss * log_softmax(LOGITS)[1]**2, rtol=1e-5)


def test_a_perfect_prediction_costs_nothing_even_with_label_smoothing():
  smoothing, vocab = 0.1, 4
  # Logits whose softmax is exactly the smoothed target distribution.
  probs = np.full((1, 1, vocab), smoothing / (vocab - 1))
  probs[0, 0, 2] = 1 - smoothing
  token_loss, _ = losses.cross_entropy_with_logits(np.log(probs).astype(np.float32),
                                                   np.array([[2]]), 0.0, smoothing)
  np.testing.assert_allclose(token_loss, 0.0, atol=1e-6)


@pytest.mark.parametrize('factor, divisor', [(None, 1.0), (233472, 233472.0),
                                             ('NUM_REAL_TARGET_TOKENS', 5.0)])
def test_loss_is_normalised_as_t5x_does(factor, divisor):
  loss, metrics = losses.weighted_loss(LOGITS, TARGETS, WEIGHTS, z_loss=1e-4,
                                       loss_normalizing_factor=factor)
  token_sum = np.sum(hand_token_loss(LOGITS, TARGETS, 1e-4, 0.0) * WEIGHTS)
  np.testing.assert_allclose(loss, token_sum / divisor, rtol=1e-5)
  np.testing.assert_allclose(metrics['cross_ent_loss_sum'] + metrics['z_loss_sum'], token_sum,
                             rtol=1e-5)


def test_padding_positions_do_not_count():
  scrambled = LOGITS.copy()
  scrambled[1, 2] = [-50.0, 50.0, 3.0, 7.0]  # the padded position
  for logits in (LOGITS, scrambled):
    loss, metrics = losses.weighted_loss(logits, TARGETS, WEIGHTS,
                                         loss_normalizing_factor='NUM_REAL_TARGET_TOKENS')
    np.testing.assert_allclose(loss, np.sum(hand_token_loss(LOGITS, TARGETS, 1e-4, 0.0) * WEIGHTS)
                               / 5.0, rtol=1e-5)
    assert float(metrics['target_tokens']) == 5.0


def test_metrics_count_examples_and_correct_tokens():
  _, metrics = losses.weighted_loss(LOGITS, TARGETS, WEIGHTS)
  correct = (np.argmax(LOGITS, axis=-1) == TARGETS) * WEIGHTS
  assert float(metrics['correct_tokens']) == correct.sum()
  assert float(metrics['examples']) == 2.0


def test_an_unknown_normalisation_is_refused():
  with pytest.raises(ValueError, match='NUM_REAL_TARGET_TOKENS'):
    losses.weighted_loss(LOGITS, TARGETS, WEIGHTS, loss_normalizing_factor='NUM_TOKENS')


@pytest.mark.parametrize('factor', [None, 233472, 'NUM_REAL_TARGET_TOKENS'])
def test_each_prompt_of_a_bank_has_its_loss_normalised_over_its_own_rows(factor):
  # Rows 0 and 1 use prompts 1 and 0 of a bank of 3; prompt 2 has no row.
  index = np.array([1, 0], np.int32)
  loss, metrics = losses.weighted_loss(LOGITS, TARGETS, WEIGHTS, loss_normalizing_factor=factor,
                                       prompt_index=index, num_prompts=3)
  alone = [losses.weighted_loss(LOGITS[[row]], TARGETS[[row]], WEIGHTS[[row]],
                                loss_normalizing_factor=factor)[0] for row in (0, 1)]
  np.testing.assert_allclose(loss, sum(alone), rtol=1e-5)  # each prompt's loss as if alone
  per_token = hand_token_loss(LOGITS, TARGETS, 1e-4, 0.0) - 1e-4 * log_softmax(LOGITS)[1] ** 2
  np.testing.assert_allclose(metrics['prompt_cross_ent_loss_sum'],
                             [np.sum(per_token[1] * WEIGHTS[1]), np.sum(per_token[0] * WEIGHTS[0]),
                              0.0], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(metrics['prompt_target_tokens'], [2.0, 3.0, 0.0])
