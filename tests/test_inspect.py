"""`python -m prompt_tuning.inspect` prints what the library finds, and bad input in one line.

One real command line (the CLI's imports cost most of its time), on the tiny T5X checkpoint and
T5's real vocabulary; the bad inputs run in this process, through the CLI's error reporting.
"""

import re
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece
from absl import flags
from absl.testing import flagsaver

import runtime_helpers
from prompt_tuning import cli, interpretability
from prompt_tuning import inspect as inspect_cli

K = 4
LABELS = ('False', 'True')
VECTOR_LINE = re.compile(r'^\s*(\d+)  (.*)$')


def token_string(pieces: sentencepiece.SentencePieceProcessor, token: int) -> str:
  """How the command must show a token id: T5's 32000 pieces, 100 sentinels, then padding rows."""
  if token < pieces.get_piece_size():
    return pieces.id_to_piece(token)
  return f'<extra_id_{32099 - token}>' if token < 32100 else f'<row {token}>'


def parse_nearest(output: str) -> list:
  """[(index, [(token string, similarity), ...]), ...] from the command's per-vector lines."""
  parsed = []
  for match in filter(None, map(VECTOR_LINE.match, output.split('\n\n', 1)[0].splitlines())):
    nearest = [item.rsplit(' ', 1) for item in match.group(2).split(' | ')]
    parsed.append((int(match.group(1)), [(token, float(sim)) for token, sim in nearest]))
  return parsed


def test_the_command_prints_each_vectors_nearest_tokens_label_hits_and_clusters(fixtures_dir,
                                                                               tmp_path):
  checkpoint = fixtures_dir / 't5x_t5_1_1_tiny' / 'checkpoint_3'
  table = np.load(fixtures_dir / 't5x_t5_1_1_tiny' / 'tiny_embeddings_32128x4.npy')
  vocabulary = fixtures_dir / 't5_vocab' / 'sentencepiece.model'
  pieces = sentencepiece.SentencePieceProcessor(model_file=str(vocabulary))
  label_ids = [pieces.encode(label) for label in LABELS]
  rows = [label_ids[1][0], label_ids[0][0], 32099, 32127]  # ▁True, ▁Fal, <extra_id_0>, padding
  rng = np.random.default_rng(2)
  prompt = np.concatenate([table[rows], rng.normal(size=(5, 4)) * table.std()]).astype(np.float32)
  prompt_file = tmp_path / 'prompt.npy'
  np.save(prompt_file, prompt)
  out = tmp_path / 'inspected'

  result = subprocess.run(
      [sys.executable, '-m', 'prompt_tuning.inspect', f'--prompt={prompt_file}',
       f'--embeddings={checkpoint}', f'--vocabulary={vocabulary}', f'--k={K}',
       f'--class_labels={",".join(LABELS)}', f'--output_dir={out}'],
      cwd=runtime_helpers.REPO_ROOT, env=runtime_helpers.subprocess_env(), capture_output=True,
      text=True, timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]

  ids, sims = interpretability.nearest_tokens(prompt, table, K)
  printed = parse_nearest(result.stdout)
  assert [index for index, _ in printed] == list(range(len(prompt)))
  for (_, nearest), row_ids, row_sims in zip(printed, ids, sims):
    assert [token for token, _ in nearest] == [token_string(pieces, i) for i in row_ids]
    np.testing.assert_allclose([sim for _, sim in nearest], row_sims, atol=1e-4)
  assert [nearest[0][0] for _, nearest in printed[:4]] == [
      '▁True', '▁Fal', '<extra_id_0>', '<row 32127>']

  hits = interpretability.label_hits(ids, label_ids)
  assert f'label hits: {len(hits.vectors)} of {len(prompt)} prompt vectors' in result.stdout
  for label, where in zip(LABELS, hits.per_label):
    (line,) = [l for l in result.stdout.splitlines() if l.startswith(f'  {label} [')]
    assert line.endswith(': ' + ', '.join(f'{v} (rank {r + 1})' for v, r in where))
  groups = interpretability.clusters(ids)
  assert f'clusters: {len(groups)} groups' in result.stdout
  for group in groups:
    assert f'\n  {", ".join(map(str, group))}\n' in result.stdout

  summary = (out / 'summary.txt').read_text(encoding='utf-8')
  assert summary and result.stdout.startswith(summary)
  assert {p.name for p in out.iterdir()} == {'summary.txt', 'tensors.tsv', 'metadata.tsv',
                                             'projector_config.pbtxt'}
  assert len((out / 'metadata.tsv').read_text(encoding='utf-8').splitlines()) == len(prompt) + 1


@pytest.fixture
def parsed_flags():
  """The command's flags at their defaults, as parsed (restored afterwards)."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver():
    yield


def bad_inputs(fixtures_dir, tmp_path):
  """{case: (flags, words the error line must hold)}."""
  table = fixtures_dir / 't5x_t5_1_1_tiny' / 'tiny_embeddings_32128x4.npy'
  checkpoint = fixtures_dir / 't5x_t5_1_1_tiny' / 'checkpoint_3'
  narrow = tmp_path / 'narrow.npy'
  np.save(narrow, np.ones((3, 2), np.float32))
  missing = tmp_path / 'missing.npy'
  return {
      'k below 1': (dict(prompt=str(narrow), embeddings=str(table), k=0), ['--k=0']),
      'missing prompt': (dict(prompt=str(missing), embeddings=str(table)),
                         [f'--prompt={missing}', 'no such file']),
      'widths differ': (dict(prompt=str(narrow), embeddings=str(table)),
                        [f'--prompt={narrow}', f'--embeddings={table}', 'width 2', 'width 4']),
      'checkpoint without a prompt': (dict(prompt=str(checkpoint), embeddings=str(table)),
                                      [f'--prompt={checkpoint}', 'encoder/prompt/prompt/prompt']),
  }


@pytest.mark.parametrize('case', ['k below 1', 'missing prompt', 'widths differ',
                                  'checkpoint without a prompt'])
def test_bad_input_is_one_error_line_naming_the_flag_and_file(case, fixtures_dir, tmp_path,
                                                              parsed_flags, capsys):
  values, words = bad_inputs(fixtures_dir, tmp_path)[case]
  with flagsaver.flagsaver(output_dir=str(tmp_path / 'out'), **values):
    with pytest.raises(SystemExit) as exit_:
      cli.report_user_errors(inspect_cli.main)
  assert exit_.value.code == 2
  captured = capsys.readouterr()
  (line,) = captured.err.splitlines()
  assert line.startswith('error: ')
  for word in words:
    assert word in line
  assert not captured.out and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('extra_ids', [100, 0])
def test_ids_past_the_pieces_are_sentinels_only_for_a_vocabulary_that_has_them(
    extra_ids, fixtures_dir, parsed_flags):
  spm = fixtures_dir / 't5_vocab' / 'sentencepiece.model'
  with flagsaver.flagsaver(vocabulary=str(spm), extra_ids=extra_ids):
    strings = inspect_cli.token_strings(inspect_cli._vocabulary(), 32128)  # pylint: disable=protected-access
  pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm))
  assert strings[:32000] == [pieces.id_to_piece(i) for i in range(32000)]
  sentinels = [f'<extra_id_{99 - i}>' for i in range(extra_ids)]
  assert strings[32000:] == sentinels + [f'<row {i}>' for i in range(32000 + extra_ids, 32128)]
