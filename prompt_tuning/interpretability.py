"""What did a prompt learn? Its vectors' nearest vocabulary tokens, label hits, and clusters.

Plain numpy over a `[P, H]` prompt and the frozen model's `[V, H]` token
embedding, as the paper's interpretability section does (cosine similarity).
Knows nothing of checkpoints, vocabularies or flags; the only I/O is the
TensorBoard projector writer, through `storage` (local paths and `gs://`).
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy.sparse import csgraph

from prompt_tuning import storage

# Rows of the embedding compared at once: [P, 4096] float32 similarities, never [P, V] float64.
CHUNK_ROWS = 4096

PROJECTOR_CONFIG = 'projector_config.pbtxt'
TENSORS_FILE = 'tensors.tsv'
METADATA_FILE = 'metadata.tsv'


def _unit_rows(x: np.ndarray) -> np.ndarray:
  """`x` `[N, H]` as float32 rows of length 1; all-zero rows stay zero (similarity 0)."""
  x = np.asarray(x, np.float32)
  norms = np.linalg.norm(x, axis=-1, keepdims=True)
  return x / np.where(norms > 0, norms, 1)


def _top_k_stable(ids: np.ndarray, sims: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """The k best columns of `sims` `[P, N]` per row; among equal values the earlier column wins.

  A stable sort keeps equal similarities in column order, and callers put
  lower token ids in earlier columns.
  """
  order = np.argsort(-sims, axis=-1, kind='stable')[:, :k]
  return np.take_along_axis(ids, order, -1), np.take_along_axis(sims, order, -1)


def nearest_tokens(prompt: np.ndarray, embeddings: np.ndarray, k: int,
                   chunk_rows: int = CHUNK_ROWS) -> Tuple[np.ndarray, np.ndarray]:
  """The k tokens nearest to each prompt vector by cosine similarity.

  Args:
    prompt: `[P, H]` prompt vectors.
    embeddings: `[V, H]` token embedding of the frozen model.
    k: tokens per prompt vector, 1 <= k <= V.
    chunk_rows: embedding rows compared at once (memory `[P, chunk_rows]` float32).

  Returns:
    ids `[P, k]` int64 and similarities `[P, k]` float32, highest similarity
    first; equal similarities are ordered by the lower token id first. An
    all-zero vector has similarity 0 to everything.
  """
  if prompt.ndim != 2 or embeddings.ndim != 2 or prompt.shape[1] != embeddings.shape[1]:
    raise ValueError(f'expected a prompt [P, H] and embeddings [V, H]; got {prompt.shape} and '
                     f'{embeddings.shape}')
  if not 1 <= k <= len(embeddings):
    raise ValueError(f'k={k}: expected 1 <= k <= {len(embeddings)} (the vocabulary rows)')
  unit_prompt = _unit_rows(prompt)
  best_ids = np.zeros((len(prompt), 0), np.int64)
  best_sims = np.zeros((len(prompt), 0), np.float32)
  for start in range(0, len(embeddings), chunk_rows):
    chunk = _unit_rows(embeddings[start:start + chunk_rows])
    sims = unit_prompt @ chunk.T  # [P, C]
    ids = np.broadcast_to(np.arange(start, start + len(chunk)), sims.shape)
    # The best so far come first: their ids are all lower than this chunk's.
    best_ids, best_sims = _top_k_stable(np.concatenate([best_ids, ids], -1),
                                        np.concatenate([best_sims, sims], -1), k)
  return best_ids, best_sims


@dataclasses.dataclass(frozen=True)
class LabelHits:
  """Where the class labels' tokens are among the prompt vectors' nearest tokens.

  Attributes:
    per_label: for each label, the (prompt vector, rank) pairs where one of
      its tokens appears, in prompt order; rank 0 is the nearest token.
    vectors: the prompt vectors with a token of any label, ascending.
  """
  per_label: Tuple[Tuple[Tuple[int, int], ...], ...]
  vectors: Tuple[int, ...]


def label_hits(ids: np.ndarray, label_token_ids: Sequence[Sequence[int]]) -> LabelHits:
  """Which prompt vectors have a token of a class label among their nearest tokens.

  Args:
    ids: `[P, k]` nearest token ids (from `nearest_tokens`).
    label_token_ids: per label, the token ids of its text; any one counts.
  """
  per_label = []
  for tokens in label_token_ids:
    vector, rank = np.nonzero(np.isin(ids, list(tokens)))  # row-major: in prompt order
    per_label.append(tuple(zip(vector.tolist(), rank.tolist())))
  vectors = sorted({vector for hits in per_label for vector, _ in hits})
  return LabelHits(tuple(per_label), tuple(vectors))


def clusters(ids: np.ndarray, min_shared: int = 1) -> List[List[int]]:
  """Groups of prompt vectors linked by sharing at least `min_shared` nearest tokens.

  A group is a connected component of the graph whose edges join two vectors
  with `min_shared` or more tokens in common, so two vectors may share a
  group through a third. Vectors linked to none are left out.

  Args:
    ids: `[P, k]` nearest token ids (from `nearest_tokens`).
    min_shared: tokens two vectors must share to be linked, >= 1.

  Returns:
    The groups, each ascending, ordered by their first vector.
  """
  if min_shared < 1:
    raise ValueError(f'min_shared={min_shared}: expected at least 1')
  # [P, U] membership of each distinct token (a token repeated in a row counts once).
  _, token_index = np.unique(ids, return_inverse=True)
  member = np.zeros((len(ids), token_index.max(initial=-1) + 1), np.int64)
  member[np.arange(len(ids))[:, None], token_index.reshape(ids.shape)] = 1
  linked = member @ member.T >= min_shared  # [P, P]
  _, component = csgraph.connected_components(linked, directed=False)
  groups = [np.flatnonzero(component == c).tolist() for c in np.unique(component)]
  return sorted(group for group in groups if len(group) > 1)


def _tsv_field(text: str) -> str:
  """`text` with the tabs and line breaks that would split a TSV row replaced by spaces."""
  return ' '.join(text.replace('\t', ' ').splitlines())


def projector_metadata(ids: np.ndarray, sims: np.ndarray, token_strings: Sequence[str]) -> str:
  """`metadata.tsv`: a header, then per prompt vector its index, top-1 token and similarity, top-k.

  The top-1 similarity lets the projector colour each point by how close it is to a real token.
  """
  lines = ['index\ttop_1\ttop_1_similarity\ttop_k']
  for index, (row, row_sims) in enumerate(zip(ids, sims)):
    tokens = [_tsv_field(token_strings[i]) for i in row]
    lines.append(f'{index}\t{tokens[0]}\t{row_sims[0]:.4f}\t{" ".join(tokens)}')
  return '\n'.join(lines) + '\n'


def projector_config(tensor_name: str = 'prompt') -> str:
  """`projector_config.pbtxt` (a text ProjectorConfig): the files beside it, by relative path."""
  return ('embeddings {\n'
          f'  tensor_name: "{tensor_name}"\n'
          f'  tensor_path: "{TENSORS_FILE}"\n'
          f'  metadata_path: "{METADATA_FILE}"\n'
          '}\n')


def write_projector(out_dir: str, prompt: np.ndarray, ids: np.ndarray, sims: np.ndarray,
                    token_strings: Sequence[str]) -> Dict[str, str]:
  """Writes TensorBoard projector files for the prompt vectors into `out_dir`.

  `tensorboard --logdir=OUT_DIR` then shows the `[P, H]` prompt in its
  Projector tab, each point labelled with its nearest tokens.

  Args:
    out_dir: a local or `gs://` folder (made if missing).
    prompt: `[P, H]` prompt vectors.
    ids: `[P, k]` nearest token ids of each vector.
    sims: `[P, k]` their similarities.
    token_strings: the text of each token id, indexable by every id in `ids`.

  Returns:
    {file name: path} of what was written; each file appears whole or not at all.
  """
  if ids.shape != sims.shape or len(ids) != len(prompt):
    raise ValueError(f'ids {ids.shape} and sims {sims.shape} must be [P, k] for the prompt '
                     f'{prompt.shape}')
  tensors = '\n'.join('\t'.join(f'{x:.9g}' for x in row)
                      for row in np.asarray(prompt, np.float32)) + '\n'
  contents = {TENSORS_FILE: tensors, METADATA_FILE: projector_metadata(ids, sims, token_strings),
              PROJECTOR_CONFIG: projector_config()}
  paths = {}
  for name, text in contents.items():
    paths[name] = f'{out_dir.rstrip("/")}/{name}'
    storage.write_text(paths[name], text)
  return paths
