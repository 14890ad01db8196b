"""`python -m prompt_tuning.inspect`: the vocabulary tokens nearest to each vector of a prompt.

Reads a `[P, H]` prompt and the frozen model's `[V, H]` token embedding, then
prints, per prompt vector, its k nearest tokens by cosine similarity, which
vectors have a class label's token among them, and the groups of vectors that
share nearest tokens (see `interpretability`). Flags:

  --prompt=PATH        a prompt `.npy`, or a checkpoint folder that holds the prompt
                       `encoder/prompt/prompt/prompt` (a run's `MODEL_DIR/checkpoint_<step>`, T5X's)
  --embeddings=PATH    the frozen model's checkpoint (only `token_embedder/embedding` is read),
                       or a `[V, H]` `.npy`
  --vocabulary=PATH    the SentencePiece model (default: the tasks' vocabulary, T5's)
  --extra_ids=100      with --vocabulary: seqio's sentinel ids after its pieces (the demo's: 0)
  --k=5                nearest tokens per prompt vector
  --class_labels=False,True   report where these labels' tokens appear
  --output_dir=DIR     also write TensorBoard projector files and summary.txt there

Bad input ends in one line `error: ...` naming the flag or file (exit status 2).
"""

import os
from typing import List, Sequence

import numpy as np

# Nothing here runs on an accelerator: a TPU or GPU busy with a training run stays untouched.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from prompt_tuning import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from prompt_tuning.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('prompt', None, 'The prompt: a [P, H] .npy file, or a checkpoint folder '
                    '(MODEL_DIR/checkpoint_<step> of a training run, or T5X\'s) that holds '
                    'encoder/prompt/prompt/prompt.')
flags.DEFINE_string('embeddings', None, 'The frozen model: its checkpoint folder (only '
                    'token_embedder/embedding is read) or a [V, H] .npy table.')
flags.DEFINE_string('vocabulary', None, 'SentencePiece model file (default: $PROMPT_TUNING_VOCAB, '
                    'else T5\'s cc_all.32000, as the tasks use).')
flags.DEFINE_integer('extra_ids', 100, "With --vocabulary: seqio's sentinel ids after its pieces "
                     "(T5's: 100; the offline demo's: 0).")
flags.DEFINE_integer('k', 5, 'Nearest tokens per prompt vector.')
flags.DEFINE_list('class_labels', None, 'Class labels, e.g. False,True: which prompt vectors '
                  'have one of their tokens among their nearest.')
flags.DEFINE_string('output_dir', None, 'Where to write TensorBoard projector files '
                    '(tensorboard --logdir=DIR) and summary.txt (local or gs://).')
FLAGS = flags.FLAGS

SUMMARY_FILE = 'summary.txt'

# The checkpoint readers, seqio and the library are imported where used, so that --help answers
# at once (see cli.py).


class InspectError(UserError):
  """A flag or input file of the inspect command is wrong (one line naming it)."""


def _is_npy(path: str) -> bool:
  return path.lower().endswith('.npy')


def _check_exists(path: str, flag: str) -> None:
  from prompt_tuning import storage  # pylint: disable=g-import-not-at-top
  if not (storage.exists(path, flag) or storage.is_dir(path, flag)):
    raise InspectError(f'{flag}={path}: no such file or folder.')


def read_prompt(path: str) -> np.ndarray:
  """The `[P, H]` prompt in the `.npy` file or checkpoint folder `path` (float32)."""
  from prompt_tuning import checkpoints  # pylint: disable=g-import-not-at-top
  from prompt_tuning.checkpoints import numpy_prompts  # pylint: disable=g-import-not-at-top
  _check_exists(path, '--prompt')
  try:
    prompt = (numpy_prompts.read_prompt(path) if _is_npy(path) else
              checkpoints.open_checkpoint(path).read(numpy_prompts.PROMPT_PARAM_PATH, np.float32))
  except checkpoints.CheckpointError as e:
    raise InspectError(f'--prompt={path}: {e}') from None
  if prompt.ndim != 2:
    raise InspectError(f'--prompt={path} has shape {prompt.shape}; expected one prompt [P, H] '
                       '(a bank [K, P, H] holds several: save one of them as a .npy).')
  return np.asarray(prompt, np.float32)


def read_embeddings(path: str) -> np.ndarray:
  """The frozen model's `[V, H]` token embedding from a checkpoint folder or a `.npy` file."""
  from prompt_tuning import checkpoints  # pylint: disable=g-import-not-at-top
  _check_exists(path, '--embeddings')
  try:
    if _is_npy(path):
      return checkpoints.read_embedding(embedding_file=path)
    return checkpoints.read_embedding(checkpoint_path=path)
  except checkpoints.CheckpointError as e:
    raise InspectError(f'--embeddings={path}: {e}') from None


def token_strings(vocabulary, rows: int) -> List[str]:
  """The text of each of `rows` token ids: SentencePiece pieces, then seqio's sentinels, then rows.

  `vocabulary` is a seqio SentencePieceVocabulary. Embedding tables are padded past the
  vocabulary (T5's: 32100 ids in 32128 rows); those rows are shown as `<row N>`.
  """
  pieces = min(rows, vocabulary.vocab_size - vocabulary.extra_ids)
  strings = [vocabulary.tokenizer.id_to_piece(i) for i in range(pieces)]
  # <extra_id_0> is the last id (seqio's own pieces for them carry a word-start mark: not shown).
  strings += [f'<extra_id_{vocabulary.vocab_size - 1 - i}>'
              for i in range(pieces, min(rows, vocabulary.vocab_size))]
  return strings + [f'<row {i}>' for i in range(len(strings), rows)]


def report(ids: np.ndarray, sims: np.ndarray, strings: Sequence[str],
           labels: Sequence[str], label_token_ids: Sequence[Sequence[int]]) -> str:
  """What the command prints: per prompt vector its nearest tokens, then label hits and clusters."""
  from prompt_tuning import interpretability  # pylint: disable=g-import-not-at-top
  width = len(str(len(ids) - 1))
  lines = [f'prompt vector: its {ids.shape[1]} nearest tokens (cosine similarity)']
  for index, (row, row_sims) in enumerate(zip(ids, sims)):
    nearest = ' | '.join(f'{strings[i]} {s:.4f}' for i, s in zip(row, row_sims))
    lines.append(f'{index:>{width}}  {nearest}')
  if labels:
    hits = interpretability.label_hits(ids, label_token_ids)
    lines.append(f'\nlabel hits: {len(hits.vectors)} of {len(ids)} prompt vectors have a class '
                 f'label token among their {ids.shape[1]} nearest')
    for label, tokens, where in zip(labels, label_token_ids, hits.per_label):
      pieces = ' '.join(strings[t] for t in tokens)
      found = ', '.join(f'{vector} (rank {rank + 1})' for vector, rank in where) or 'nowhere'
      lines.append(f'  {label} [{pieces}]: {found}')
  groups = interpretability.clusters(ids)
  lines.append(f'\nclusters: {len(groups)} groups of prompt vectors that share nearest tokens')
  lines += [f'  {", ".join(map(str, group))}' for group in groups]
  return '\n'.join(lines) + '\n'


def _vocabulary():
  """--vocabulary with --extra_ids, else the tasks' own (`data.vocab`: T5's unless configured)."""
  import seqio  # pylint: disable=g-import-not-at-top
  from prompt_tuning.data import vocab  # pylint: disable=g-import-not-at-top
  if FLAGS.vocabulary:
    _check_exists(FLAGS.vocabulary, '--vocabulary')
    return seqio.SentencePieceVocabulary(FLAGS.vocabulary, extra_ids=FLAGS.extra_ids)
  return vocab.get_vocabulary()


def main() -> None:
  from prompt_tuning import interpretability, storage  # pylint: disable=g-import-not-at-top
  for flag in ('prompt', 'embeddings'):
    if not FLAGS[flag].value:
      raise InspectError(f'--{flag} is required (--help describes it).')
  if FLAGS.k < 1:
    raise InspectError(f'--k={FLAGS.k}: expected at least 1 nearest token.')
  prompt = read_prompt(FLAGS.prompt)
  embeddings = read_embeddings(FLAGS.embeddings)
  if prompt.shape[1] != embeddings.shape[1]:
    raise InspectError(f'--prompt={FLAGS.prompt} has width {prompt.shape[1]} but --embeddings='
                       f'{FLAGS.embeddings} has width {embeddings.shape[1]} ({embeddings.shape}); '
                       'they must come from the same frozen model.')
  if FLAGS.k > len(embeddings):
    raise InspectError(f'--k={FLAGS.k}: the vocabulary has only {len(embeddings)} rows.')
  vocabulary = _vocabulary()
  strings = token_strings(vocabulary, len(embeddings))
  labels = FLAGS.class_labels or []
  label_token_ids = [list(vocabulary.encode(label)) for label in labels]
  for label, tokens in zip(labels, label_token_ids):
    if not tokens or max(tokens) >= len(embeddings):
      raise InspectError(f'--class_labels: {label!r} is token ids {tokens} in --vocabulary='
                         f'{vocabulary.sentencepiece_model_file}, which --embeddings='
                         f'{FLAGS.embeddings} ({len(embeddings)} rows) cannot show.')
  ids, sims = interpretability.nearest_tokens(prompt, embeddings, FLAGS.k)
  text = report(ids, sims, strings, labels, label_token_ids)
  print(text, end='')
  if FLAGS.output_dir:
    interpretability.write_projector(FLAGS.output_dir, prompt, ids, sims, strings)
    storage.write_text(f'{FLAGS.output_dir.rstrip("/")}/{SUMMARY_FILE}', text)
    print(f'\nwrote the projector files and {SUMMARY_FILE} to {FLAGS.output_dir} '
          f'(tensorboard --logdir={FLAGS.output_dir}, Projector tab)')


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
