"""Prompt initializers and how prompts combine with the embedded input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece

from prompt_tuning import checkpoints, prompts


@pytest.fixture(scope='module')
def vocabulary(fixtures_dir):
  return sentencepiece.SentencePieceProcessor(model_file=str(fixtures_dir / 't5_vocab' / 'sentencepiece.model'))


@pytest.fixture(scope='module')
def embedding(fixtures_dir):
  return np.load(fixtures_dir / 't5x_t5_1_1_tiny' / 'tiny_embeddings_32128x4.npy')


def test_random_uniform_stays_within_its_scale():
  value = prompts.random_uniform(0.5)(jax.random.key(0), (100, 16))
  assert value.shape == (100, 16) and float(jnp.abs(value).max()) <= 0.5
  assert float(jnp.abs(value).max()) > 0.45  # actually spread over the range


def test_sampled_vocab_rows_come_from_the_first_population_size_rows(embedding):
  value = np.asarray(prompts.sampled_vocab(embedding, population_size=50)(jax.random.key(0), (20, 4)))
  population = embedding[:50]
  matches = [np.flatnonzero((population == row).all(axis=1)) for row in value]
  assert all(len(m) >= 1 for m in matches)
  assert len({int(m[0]) for m in matches}) == 20  # without replacement
  longer = prompts.sampled_vocab(embedding, population_size=5)(jax.random.key(0), (8, 4))
  assert longer.shape == (8, 4)  # with replacement once P exceeds the population


def test_class_label_rows_are_the_mean_of_their_sub_token_embeddings(vocabulary, embedding):
  labels = ['entailment', 'not_entailment']
  assert len(vocabulary.encode('not_entailment')) > 1  # a mean over several sub-tokens
  fallback = prompts.random_uniform(0.5)
  value = np.asarray(prompts.class_labels(embedding, vocabulary, labels, fallback)(
      jax.random.key(0), (5, 4)))
  for row, label in enumerate(labels):
    tokens = vocabulary.encode(label)
    np.testing.assert_allclose(value[row], embedding[tokens].mean(axis=0), rtol=1e-6)
  assert np.abs(value[2:]).max() <= 0.5  # the rest comes from the fallback


def test_class_labels_beyond_the_prompt_length_keep_the_first_ones(vocabulary, embedding):
  value = np.asarray(prompts.class_labels(embedding, vocabulary, ['yes', 'no', 'maybe'],
                                          prompts.random_uniform())(jax.random.key(0), (2, 4)))
  expected = [embedding[vocabulary.encode(label)].mean(axis=0) for label in ('yes', 'no')]
  np.testing.assert_allclose(value, np.stack(expected), rtol=1e-6)


def test_string_initialisation_uses_its_token_embeddings_then_the_fallback(vocabulary, embedding):
  text = 'Is the second sentence implied by the first?'
  tokens = vocabulary.encode(text)
  value = np.asarray(prompts.from_string(embedding, vocabulary, text, prompts.random_uniform(0.01))(
      jax.random.key(0), (len(tokens) + 2, 4)))
  np.testing.assert_array_equal(value[:len(tokens)], embedding[tokens])
  assert np.abs(value[len(tokens):]).max() <= 0.01
  with pytest.raises(prompts.PromptShapeError, match='prompt length is 3'):
    prompts.from_string(embedding, vocabulary, text, prompts.random_uniform())(jax.random.key(0), (3, 4))


def test_bank_initialisers_give_each_prompt_its_own_rows(embedding):
  value = np.asarray(prompts.sampled_vocab(embedding, 100)(jax.random.key(0), (3, 10, 4)))
  assert value.shape == (3, 10, 4) and not np.array_equal(value[0], value[1])


def test_released_base_prompt_loads_into_a_base_sized_prompt(fixtures_dir):
  path = fixtures_dir / 'released_prompts' / 't5_1_1_lm100k_base' / 'rte.npy'
  init = prompts.from_array(checkpoints.read_prompt(str(path)), source=str(path))
  np.testing.assert_array_equal(init(jax.random.key(0), (100, 768)), np.load(path))
  with pytest.raises(prompts.PromptShapeError) as error:
    init(jax.random.key(0), (100, 512))  # Small's width
  assert '(100, 768)' in str(error.value) and '(100, 512)' in str(error.value)
  assert str(path) in str(error.value) and '\n' not in str(error.value)


def test_an_unreadable_prompt_file_fails_with_its_path(tmp_path):
  bad = tmp_path / 'prompt.npy'
  bad.write_bytes(b'not numpy')
  with pytest.raises(ValueError, match=str(bad)):
    checkpoints.read_prompt(str(bad))


def _combine(mode, visible):
  prompt = jnp.full((2, 2, 1), -1.0)
  embedded = jnp.arange(1, 11, dtype=jnp.float32).reshape(2, 5, 1)
  combined, mask = prompts.combine_with_inputs(prompt, embedded, jnp.asarray(visible), mode)
  return np.asarray(combined)[..., 0].tolist(), np.asarray(mask).astype(int).tolist()


VISIBLE = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_prefix_puts_the_prompt_first_and_keeps_padding_invisible():
  values, mask = _combine('prefix', VISIBLE)
  assert values == [[-1, -1, 1, 2, 3, 4, 5], [-1, -1, 6, 7, 8, 9, 10]]
  assert mask == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]


def test_after_bos_puts_the_prompt_after_the_first_token():
  values, mask = _combine('after_bos', VISIBLE)
  assert values == [[1, -1, -1, 2, 3, 4, 5], [6, -1, -1, 7, 8, 9, 10]]
  assert mask == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]


def test_suffix_puts_the_prompt_before_each_examples_eos():
  values, mask = _combine('suffix', VISIBLE)
  assert values == [[1, 2, -1, -1, 3, 4, 5], [6, 7, 8, 9, -1, -1, 10]]
  assert mask == [[1, 1, 1, 1, 1, 0, 0], [1] * 7]
  assert np.asarray(prompts.combined_visibility(jnp.asarray(VISIBLE), 2, 'suffix')).astype(
      int).tolist() == mask


def test_an_unknown_combine_mode_is_rejected():
  with pytest.raises(ValueError, match="'middle'"):
    _combine('middle', VISIBLE)
