"""`python -m prompt_tuning.eval` and `.infer` end to end, with the prompt of the trained run.

The prompt comes from the run's checkpoint (CHECKPOINT_PATH) or from its `.npy`
export (PROMPT_FILE); both must give the metrics the run itself logged.
Inference on raw text uses a byte-vocabulary toy task and a random prompt; serving
mixed tasks, a bank of two random prompts, each also served alone.
"""

import json

import numpy as np
import pytest

import runtime_helpers as h

RAW_INPUTS = ['hello', 'soft prompts', 'a frozen model']
# Per task, its inputs; the mixed requests interleave them, and batches of 4 mix the tasks.
TASK_INPUTS = {'a': ['hello', 'soft prompts', 'a frozen model', 'tasks mixed', 'one batch'],
               'b': ['many tasks', 'one model', 'prompt bank', 'served', 'in order']}
MIXED_ORDER = ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a', 'a', 'b']
BYTE_TASK = {'MIXTURE_OR_TASK_NAME': "'toy_reverse'",
             'TASK_FEATURE_LENGTHS': "{'inputs': 16, 'targets': 8}",
             'VOCABULARY': '@seqio.ByteVocabulary()'}
BYTE_MODEL = {**h.TOY_MODEL, 'vocab_size': 384}
INFER_BANK_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_files.gin', *h.INFER_GIN[1:])
INFER_FILE_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_file.gin', *h.INFER_GIN[1:])
EVAL_BANK_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_files.gin', *h.EVAL_GIN[1:])
ENSEMBLE_MEMBERS = ('trained', 'random', 'trained_again')
# An ensemble trained in one run, from three prompt files; its member 1 also trained alone.
ENSEMBLE_TRAIN_GIN = (h.MODEL_GIN[0], 'gin/prompts/ensemble.gin', 'gin/prompts/from_files.gin',
                      *h.TRAIN_GIN[1:])
ALONE_TRAIN_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_file.gin', *h.TRAIN_GIN[1:])
ENSEMBLE_STEPS = 5
# A bank of task prompts trained on the parity task and its flipped twin.
TASKS_TRAIN_GIN = (h.MODEL_GIN[0], 'gin/prompts/multi_task.gin', *h.TRAIN_GIN[1:])
MIXTURE = {'MIXTURE_OR_TASK_NAME': "'toy_parity_mix'"}
MIXTURE_TASKS = ('toy_parity', 'toy_parity_flipped')
TASKS_STEPS = 10


def mixed_requests():
  """The requests in MIXED_ORDER: each task's inputs in their order."""
  left = {task: list(texts) for task, texts in TASK_INPUTS.items()}
  return [{'task': task, 'inputs': left[task].pop(0)} for task in MIXED_ORDER]


def serving_commands(folder):
  """Each task's prompt served alone on its inputs, then both as one bank on the mixed requests."""
  prompts = {}
  for seed, (task, texts) in enumerate(TASK_INPUTS.items()):
    prompts[task] = folder / f'{task}.npy'
    # Large values, so that the two prompts make the model answer differently.
    np.save(prompts[task], np.random.default_rng(seed).normal(0, 4, (4, 64)).astype(np.float32))
    (folder / f'{task}.txt').write_text('\n'.join(texts) + '\n')
  (folder / 'requests.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in mixed_requests()))
  commands = {f'serve_{task}': h.cli_command('infer', INFER_FILE_GIN, h.toy_macros(
      folder / task, BYTE_MODEL, **BYTE_TASK, PROMPT_FILE=repr(str(prompts[task])),
      INPUT_FILE=repr(str(folder / f'{task}.txt')))) for task in TASK_INPUTS}
  commands['serve_mixed'] = h.cli_command('infer', INFER_BANK_GIN, h.toy_macros(
      folder / 'mixed', BYTE_MODEL, **BYTE_TASK, BATCH_SIZE='4',
      PROMPT_FILES=repr({task: str(path) for task, path in prompts.items()}),
      INPUT_FILE=repr(str(folder / 'requests.jsonl'))))
  return commands


def bank_training_commands(folder):
  """The ensemble trained in one run and its member 1 alone; a bank of task prompts trained on
  the mixture, then evaluated from its exports, each task with its own prompt."""
  members = {}
  for k in range(3):
    members[f'start_{k}'] = str(folder / f'start_{k}.npy')
    np.save(members[f'start_{k}'],
            np.random.default_rng(10 + k).uniform(-0.5, 0.5, (4, 64)).astype(np.float32))
  exports = folder / 'tasks' / 'numpy_checkpoints' / f'checkpoint_{TASKS_STEPS}'
  return {
      'train_ensemble': h.cli_command('train', ENSEMBLE_TRAIN_GIN, h.train_macros(
          folder / 'ensemble', ENSEMBLE_STEPS, evaluate=True, PROMPT_FILES=repr(members))),
      'train_member_alone': h.cli_command('train', ALONE_TRAIN_GIN, h.train_macros(
          folder / 'alone', ENSEMBLE_STEPS, PROMPT_FILE=repr(members['start_1']))),
      'train_tasks': h.cli_command('train', TASKS_TRAIN_GIN, h.train_macros(
          folder / 'tasks', TASKS_STEPS, evaluate=True, **MIXTURE)),
      'eval_tasks': h.cli_command('eval', EVAL_BANK_GIN, h.toy_macros(
          folder / 'eval_tasks', EVAL_STEPS='2', **MIXTURE, PROMPT_FILES=repr(
              {task: str(exports / f'{task}.npy') for task in MIXTURE_TASKS}))),
  }


def metrics_at(model_dir, step, task=h.TASK):
  lines = h.read_jsonl(model_dir / 'inference_eval' / f'{task}-metrics.jsonl')
  return {k: v for row in lines if row['step'] == step for k, v in row.items() if k != 'step'}


def predictions_at(model_dir, step, field='prediction', task=h.TASK):
  return [row[field] for row in
          h.read_jsonl(model_dir / 'inference_eval' / f'{task}-{step:06}.jsonl')]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Output folders and results of the CLI runs, made one after another in one child process
  (`h.start_serving`): two evals, two inferences, the serving runs, the ensemble's eval, and
  the bank training runs."""
  dirs = {name: tmp_path_factory.mktemp(name)
          for name in ('eval_checkpoint', 'eval_prompt_file', 'infer_split', 'infer_file',
                       'serving', 'eval_ensemble', 'bank_training')}
  inputs_file = dirs['infer_file'] / 'inputs.txt'
  inputs_file.write_text('\n'.join(RAW_INPUTS) + '\n')
  trained_dir, _ = h.trained_run()  # unless an earlier test made it
  checkpoint = repr(str(trained_dir / f'checkpoint_{h.TRAINED_STEPS}'))
  trained_prompt = str(trained_dir / 'numpy_checkpoints' / f'checkpoint_{h.TRAINED_STEPS}' /
                       'encoder.prompt.prompt.prompt.npy')
  prompt_file = repr(trained_prompt)
  random_prompt = str(dirs['eval_ensemble'] / 'random.npy')
  np.save(random_prompt, np.random.default_rng(3).uniform(-0.5, 0.5, (4, 64)).astype(np.float32))
  commands = {
      'eval_checkpoint': h.cli_command('eval', h.EVAL_GIN, h.toy_macros(
          dirs['eval_checkpoint'], h.WIDE_MODEL, CHECKPOINT_PATH=checkpoint, EVAL_STEPS='2')),
      'eval_prompt_file': h.cli_command('eval', h.PROMPT_FILE_EVAL_GIN, h.toy_macros(
          dirs['eval_prompt_file'], h.WIDE_MODEL, PROMPT_FILE=prompt_file, EVAL_STEPS='2')),
      # 32 examples in batches of 6: the last batch is padded.
      'infer_split': h.cli_command('infer', h.INFER_GIN, h.toy_macros(
          dirs['infer_split'], h.WIDE_MODEL, CHECKPOINT_PATH=checkpoint, BATCH_SIZE='6')),
      'infer_file': h.cli_command('infer', h.INFER_GIN, h.toy_macros(
          dirs['infer_file'], {**h.TOY_MODEL, 'vocab_size': 384},
          MIXTURE_OR_TASK_NAME="'toy_reverse'", TASK_FEATURE_LENGTHS="{'inputs': 16, 'targets': 8}",
          INPUT_FILE=repr(str(inputs_file)), VOCABULARY='@seqio.ByteVocabulary()')),
      **serving_commands(dirs['serving']),
      # The trained prompt twice and a random one: two members always agree.
      'eval_ensemble': h.cli_command('eval', EVAL_BANK_GIN, h.toy_macros(
          dirs['eval_ensemble'], h.WIDE_MODEL, EVAL_STEPS='2', ENSEMBLE='True',
          PROMPT_FILES=repr(dict(zip(ENSEMBLE_MEMBERS,
                                     (trained_prompt, random_prompt, trained_prompt)))))),
      **bank_training_commands(dirs['bank_training']),
  }
  results = h.start_serving(commands, tmp_path_factory.mktemp('served'))(timeout=600)
  return dirs, {name: h.check(result) for name, result in results.items()}


def test_eval_from_a_training_checkpoint_gives_the_metrics_of_the_run(runs):
  dirs, _ = runs
  trained_dir, result = h.trained_run()
  assert metrics_at(dirs['eval_checkpoint'], h.TRAINED_STEPS) == pytest.approx(
      result.eval_metrics[h.TASK])
  assert predictions_at(dirs['eval_checkpoint'], h.TRAINED_STEPS) == predictions_at(
      trained_dir, h.TRAINED_STEPS)


def test_eval_from_the_prompt_file_matches_eval_from_the_checkpoint(runs):
  dirs, _ = runs
  from_checkpoint = metrics_at(dirs['eval_checkpoint'], h.TRAINED_STEPS)
  assert metrics_at(dirs['eval_prompt_file'], 0) == pytest.approx(from_checkpoint)
  assert predictions_at(dirs['eval_prompt_file'], 0) == predictions_at(
      dirs['eval_checkpoint'], h.TRAINED_STEPS)


def test_eval_prints_the_metrics(runs):
  dirs, results = runs
  accuracy = metrics_at(dirs['eval_checkpoint'], h.TRAINED_STEPS)['accuracy']
  assert f'{h.TASK}: accuracy {accuracy:.2f}' in results['eval_checkpoint'].stdout


def test_infer_writes_one_line_per_example_of_the_split(runs):
  dirs, results = runs
  output = dirs['infer_split'] / 'inference' / 'predictions.jsonl'
  rows = h.read_jsonl(output)
  assert len(rows) == 32  # the toy validation split
  assert f'wrote 32 predictions to {output}' in results['infer_split'].stdout
  assert all(set(row) == {'inputs', 'prediction', 'score'} for row in rows)
  assert all(np.isfinite(row['score']) and row['score'] <= 0 for row in rows)
  # Greedy decoding of the same prompt: the eval run's inputs and predictions, in the split's order.
  evaluated = predictions_at(dirs['eval_checkpoint'], h.TRAINED_STEPS)
  assert [row['prediction'] for row in rows[:len(evaluated)]] == evaluated
  inputs = [row['inputs'] for row in predictions_at(dirs['eval_checkpoint'], h.TRAINED_STEPS,
                                                    field='input')]
  assert [row['inputs'] for row in rows[:len(inputs)]] == inputs


def test_infer_on_a_file_of_raw_inputs_writes_one_line_per_input(runs):
  dirs, _ = runs
  rows = h.read_jsonl(dirs['infer_file'] / 'inference' / 'predictions.jsonl')
  assert [row['inputs'] for row in rows] == RAW_INPUTS
  assert all(isinstance(row['prediction'], str) and np.isfinite(row['score']) for row in rows)


def test_mixed_task_infer_answers_each_request_as_its_tasks_own_infer_does(runs):
  dirs, results = runs
  folder = dirs['serving']
  alone = {task: h.read_jsonl(folder / task / 'inference' / 'predictions.jsonl')
           for task in TASK_INPUTS}
  # The two prompts answer differently, or the bank could ignore the task and still pass.
  assert [r['prediction'] for r in alone['a']] != [r['prediction'] for r in alone['b']]
  mixed = h.read_jsonl(folder / 'mixed' / 'inference' / 'predictions.jsonl')
  assert f'wrote {len(MIXED_ORDER)} predictions' in results['serve_mixed'].stdout
  assert [{'task': r['task'], 'inputs': r['inputs']} for r in mixed] == mixed_requests()
  position = {task: 0 for task in TASK_INPUTS}
  for row in mixed:  # line for line, the task's own answer to the same input
    expected = alone[row['task']][position[row['task']]]
    position[row['task']] += 1
    assert row['inputs'] == expected['inputs']
    assert row['prediction'] == expected['prediction']
    assert row['score'] == pytest.approx(expected['score'], rel=1e-5, abs=1e-5)


def test_an_ensemble_reports_each_member_their_mean_and_best_and_its_vote(runs):
  dirs, results = runs
  alone = metrics_at(dirs['eval_prompt_file'], 0)['accuracy']
  logged = metrics_at(dirs['eval_ensemble'], 0)
  members = [logged[f'member_{k}/accuracy'] for k in range(len(ENSEMBLE_MEMBERS))]
  # Members 0 and 2 are the trained prompt: they score what it scores alone.
  assert members[0] == members[2] == pytest.approx(alone)
  assert logged['mean/accuracy'] == pytest.approx(sum(members) / 3)
  assert logged['best/accuracy'] == max(members)
  rows = h.read_jsonl(dirs['eval_ensemble'] / 'inference_eval' / f'{h.TASK}-000000.jsonl')
  assert len(rows) == 2 * 8  # EVAL_STEPS batches of BATCH_SIZE
  assert [row['members'][0] for row in rows] == predictions_at(dirs['eval_prompt_file'], 0)
  for row in rows:  # the vote: two of three members always agree
    assert row['members'][0] == row['members'][2] == row['prediction']
  assert logged['accuracy'] == pytest.approx(alone)
  assert f'{h.TASK}: accuracy' in results['eval_ensemble'].stdout


def test_each_member_of_an_ensemble_trained_in_one_run_ends_where_it_would_alone(runs):
  dirs, results = runs
  folder = dirs['bank_training']
  exported = lambda run, name: np.load(folder / run / 'numpy_checkpoints' /
                                       f'checkpoint_{ENSEMBLE_STEPS}' / name)
  members = [exported('ensemble', f'member_{k}.npy') for k in range(3)]
  np.testing.assert_array_equal(np.stack(members),
                                exported('ensemble', 'encoder.prompt.prompt.prompt.npy'))
  alone = exported('alone', 'encoder.prompt.prompt.prompt.npy')
  start = np.load(folder / 'start_1.npy')
  assert np.abs(alone - start).max() > 0.1  # it trained
  # Equal but for float rounding (2.4e-5 at most here): the batches differ in size, so XLA
  # sums in another order.
  np.testing.assert_allclose(members[1], alone, atol=2e-4)
  assert 'member_2/cross_ent_loss_per_token' in h.tensorboard(
      folder / 'ensemble' / 'train')


def test_an_ensemble_trained_in_one_run_is_evaluated_as_an_ensemble(runs):
  dirs, _ = runs
  folder = dirs['bank_training'] / 'ensemble'
  logged = metrics_at(folder, ENSEMBLE_STEPS)
  members = [logged[f'member_{k}/accuracy'] for k in range(3)]
  assert logged['mean/accuracy'] == pytest.approx(sum(members) / 3)
  assert logged['best/accuracy'] == max(members)
  rows = h.read_jsonl(folder / 'inference_eval' / f'{h.TASK}-{ENSEMBLE_STEPS:06}.jsonl')
  assert len(rows) == 2 * 8
  for row in rows:  # the vote, by hand: a majority's answer, else member 0's
    answers = row['members']
    majority = [a for a in answers if answers.count(a) >= 2]
    assert row['prediction'] == (majority[0] if majority else answers[0])


def test_a_bank_trained_on_a_mixture_is_evaluated_and_exported_per_task(runs):
  dirs, results = runs
  folder = dirs['bank_training']
  exports = folder / 'tasks' / 'numpy_checkpoints' / f'checkpoint_{TASKS_STEPS}'
  bank = np.load(exports / 'encoder.prompt.prompt.prompt.npy')
  for row, task in enumerate(MIXTURE_TASKS):
    np.testing.assert_array_equal(np.load(exports / f'{task}.npy'), bank[row])
    during_training = metrics_at(folder / 'tasks', TASKS_STEPS, task)
    assert set(during_training) == {'accuracy'}
    # Evaluated later from its export, each task with the prompt of its name, as in training.
    assert metrics_at(folder / 'eval_tasks', 0, task) == pytest.approx(during_training)
    assert (predictions_at(folder / 'eval_tasks', 0, task=task)
            == predictions_at(folder / 'tasks', TASKS_STEPS, task=task))
    assert f'{task}: accuracy' in results['eval_tasks'].stdout
  assert 'toy_parity_flipped/cross_ent_loss_per_token' in h.tensorboard(
      folder / 'tasks' / 'train')
