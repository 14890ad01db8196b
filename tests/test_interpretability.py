"""The nearest tokens of a prompt, its label hits and clusters, and its TensorBoard projector files.

The nearest-token search runs on the real tiny T5X checkpoint's embedding table (32128 x 4)
and T5's real SentencePiece vocabulary, against a brute-force float64 search.
"""

import pathlib

import numpy as np
import pytest
import sentencepiece
from google.protobuf import text_format
from tensorboard.plugins.projector import projector_config_pb2

from prompt_tuning import interpretability

K = 5


@pytest.fixture(scope='module')
def table(fixtures_dir) -> np.ndarray:
  return np.load(fixtures_dir / 't5x_t5_1_1_tiny' / 'tiny_embeddings_32128x4.npy')


@pytest.fixture(scope='module')
def pieces(fixtures_dir) -> sentencepiece.SentencePieceProcessor:
  return sentencepiece.SentencePieceProcessor(
      model_file=str(fixtures_dir / 't5_vocab' / 'sentencepiece.model'))


def label_rows(pieces: sentencepiece.SentencePieceProcessor) -> list:
  """The token ids of "▁True" and of the pieces of "False" (not one piece in T5's vocabulary)."""
  true_id = pieces.piece_to_id('▁True')
  assert true_id != pieces.unk_id()
  return [true_id, *pieces.encode('False')]


def brute_force(prompt: np.ndarray, table: np.ndarray, k: int):
  """Every cosine similarity in float64, fully sorted: highest first, then the lower id."""
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  sims = unit(prompt.astype(np.float64)) @ unit(table.astype(np.float64)).T  # [P, V]
  ids = np.arange(table.shape[0])
  order = np.stack([np.lexsort((ids, -row)) for row in sims])[:, :k + 1]
  return order, np.take_along_axis(sims, order, -1)


def test_nearest_tokens_are_those_of_a_brute_force_search_of_the_real_table(table, pieces):
  rng = np.random.default_rng(0)
  rows = label_rows(pieces) + [32099, 32127]  # <extra_id_0> and a padding row too
  prompt = np.concatenate([table[rows], rng.normal(size=(6, 4)) * table.std()]).astype(np.float32)
  want_ids, want_sims = brute_force(prompt, table, K)
  # The data must not leave float32 to choose between near-equal neighbours.
  assert np.diff(want_sims, axis=-1).max() < -1e-6
  for chunk_rows in (interpretability.CHUNK_ROWS, 1000):
    ids, sims = interpretability.nearest_tokens(prompt, table, K, chunk_rows=chunk_rows)
    assert ids.shape == sims.shape == (len(prompt), K)
    np.testing.assert_array_equal(ids, want_ids[:, :K])
    np.testing.assert_allclose(sims, want_sims[:, :K], atol=1e-5)


def test_a_row_copied_from_the_table_has_its_own_token_first_with_similarity_1(table, pieces):
  rows = label_rows(pieces)
  ids, sims = interpretability.nearest_tokens(table[rows], table, K)
  np.testing.assert_array_equal(ids[:, 0], rows)
  np.testing.assert_allclose(sims[:, 0], 1, atol=1e-6)
  assert (sims[:, 1:] < sims[:, :1]).all()


def test_equal_similarities_go_to_the_lower_token_id_also_across_chunks():
  table = np.zeros((12, 2), np.float32)
  table[:, 1] = 1  # every row orthogonal to the prompt...
  table[[9, 2, 5]] = [[1, 0], [1, 0], [4, 0]]  # ...but three, of equal cosine 1
  table[7] = 0  # all zero: similarity 0, not NaN
  for chunk_rows in (1, 3, 5, 100):
    ids, sims = interpretability.nearest_tokens(np.array([[3., 0.]]), table, 5, chunk_rows)
    np.testing.assert_array_equal(ids, [[2, 5, 9, 0, 1]])
    np.testing.assert_allclose(sims, [[1, 1, 1, 0, 0]], atol=1e-7)
  _, sims = interpretability.nearest_tokens(np.array([[-1., 0.]]), table, 12)
  assert np.isfinite(sims).all() and sims[0, 0] == 0  # zero rows and orthogonal ones tie at 0


@pytest.mark.parametrize('k', [0, 13])
def test_k_outside_the_vocabulary_is_refused(k):
  with pytest.raises(ValueError, match=f'k={k}'):
    interpretability.nearest_tokens(np.ones((1, 2)), np.ones((12, 2)), k)


def test_label_hits_say_which_vectors_hold_which_labels_tokens_at_which_rank():
  ids = np.array([[5, 1, 7],
                  [2, 3, 4],
                  [9, 5, 0],
                  [8, 8, 8]])
  hits = interpretability.label_hits(ids, [[5], [3, 9], [42]])
  assert hits.per_label == (((0, 0), (2, 1)), ((1, 1), (2, 0)), ())
  assert hits.vectors == (0, 1, 2)
  assert interpretability.label_hits(ids, []).vectors == ()


def test_clusters_join_vectors_that_share_tokens_through_others_too():
  ids = np.array([[1, 2], [3, 4], [2, 5], [6, 7], [5, 8], [7, 9], [10, 11]])
  # 0-2 share 2, 2-4 share 5; 3-5 share 7; 1 and 6 share nothing.
  assert interpretability.clusters(ids) == [[0, 2, 4], [3, 5]]
  assert interpretability.clusters(ids[::-1]) == [[1, 3], [2, 4, 6]]


def test_clusters_with_min_shared_count_each_token_once():
  ids = np.array([[1, 2, 3], [2, 3, 4], [3, 9, 8], [1, 2, 7], [6, 6, 1]])
  assert interpretability.clusters(ids, min_shared=1) == [[0, 1, 2, 3, 4]]
  # 0-1 share {2, 3}, 0-3 share {1, 2}; 1-3 only {2}; 4 repeats 6, which counts once.
  assert interpretability.clusters(ids, min_shared=2) == [[0, 1, 3]]
  assert interpretability.clusters(ids, min_shared=3) == []
  with pytest.raises(ValueError, match='min_shared=0'):
    interpretability.clusters(ids, min_shared=0)


def read_tsv(path: pathlib.Path) -> list:
  return [line.split('\t') for line in path.read_text(encoding='utf-8').splitlines()]


def test_projector_files_read_back_as_tensorboard_reads_them(tmp_path):
  rng = np.random.default_rng(1)
  prompt = rng.normal(size=(3, 4)).astype(np.float32)
  ids = np.array([[2, 0], [1, 2], [3, 1]])
  sims = np.array([[0.9, 0.5], [0.8, 0.7], [0.6, 0.1]], np.float32)
  strings = ['▁a', 'tab\there', '<extra_id_0>', '<row 3>']
  out = tmp_path / 'projector'
  paths = interpretability.write_projector(str(out), prompt, ids, sims, strings)
  assert sorted(paths) == sorted(p.name for p in out.iterdir())

  tensors = np.array(read_tsv(out / 'tensors.tsv'), np.float32)
  np.testing.assert_array_equal(tensors, prompt)  # every float32 value exactly

  header, *rows = read_tsv(out / 'metadata.tsv')
  assert header == ['index', 'top_1', 'top_1_similarity', 'top_k']
  assert [row[0] for row in rows] == ['0', '1', '2']
  assert [row[1] for row in rows] == ['<extra_id_0>', 'tab here', '<row 3>']
  assert [float(row[2]) for row in rows] == pytest.approx(sims[:, 0], abs=1e-4)
  assert rows[1][3] == 'tab here <extra_id_0>'  # a tab in a token must not split the row

  config = text_format.Parse((out / 'projector_config.pbtxt').read_text(),
                             projector_config_pb2.ProjectorConfig())
  (embedding,) = config.embeddings
  # TensorBoard resolves relative paths against the config's folder.
  assert (out / embedding.tensor_path).resolve() == (out / 'tensors.tsv').resolve()
  assert (out / embedding.metadata_path).resolve() == (out / 'metadata.tsv').resolve()
  assert embedding.tensor_name
