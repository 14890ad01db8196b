"""What a training run leaves in MODEL_DIR: summaries, the gin config, metrics, `.npy` prompts.

Reads the shared trained run (20 steps, logged every 5, evaluated at 10 and 20).
"""

import numpy as np
import pytest

import runtime_helpers as h

LOGGED_STEPS = [5, 10, 15, 20]
CHECKPOINT_STEPS = LOGGED_STEPS
EVAL_STEPS = [10, 20]


@pytest.fixture(scope='module')
def run():
  return h.trained_run()


@pytest.fixture(scope='module')
def train_summaries(run):
  model_dir, _ = run
  return h.tensorboard(model_dir / 'train')


@pytest.mark.parametrize('tag', ['loss', 'accuracy', 'learning_rate', 'timing/steps_per_second',
                                 'timing/examples_per_second', 'timing/tokens_per_second'])
def test_tensorboard_holds_each_training_scalar_every_log_period(train_summaries, tag):
  assert sorted(train_summaries[tag]) == LOGGED_STEPS
  assert all(np.isfinite(v) and v >= 0 for v in train_summaries[tag].values())


def test_logged_loss_is_the_mean_over_its_period(run, train_summaries):
  _, result = run
  for step in LOGGED_STEPS:
    np.testing.assert_allclose(train_summaries['loss'][step], np.mean(result.losses[step - 5:step]),
                               rtol=1e-5)


def test_logged_rates_are_consistent(train_summaries):
  assert set(train_summaries['learning_rate'].values()) == {1.0}  # LEARNING_RATE
  for step in LOGGED_STEPS:
    steps, examples, tokens = (train_summaries[f'timing/{unit}_per_second'][step]
                               for unit in ('steps', 'examples', 'tokens'))
    np.testing.assert_allclose(examples / steps, 8, rtol=1e-3)  # BATCH_SIZE
    np.testing.assert_allclose(tokens / examples, 12 + 4, rtol=1e-3)  # TASK_FEATURE_LENGTHS
    assert 0.0 <= train_summaries['accuracy'][step] <= 1.0


def test_the_final_gin_config_is_saved_as_a_file_and_as_tensorboard_text(run, train_summaries):
  model_dir, _ = run
  config = (model_dir / 'config.gin').read_text()
  assert f'TRAIN_STEPS = {h.TRAINED_STEPS}' in config
  assert "MIXTURE_OR_TASK_NAME = 'toy_parity'" in config
  text = train_summaries['config'][0].decode()
  assert f'TRAIN_STEPS = {h.TRAINED_STEPS}' in text


def test_tensorboard_holds_the_eval_metric_of_the_task(run):
  model_dir, result = run
  accuracy = h.tensorboard(model_dir / 'inference_eval' / h.TASK)['eval/accuracy']
  assert sorted(accuracy) == EVAL_STEPS
  np.testing.assert_allclose(accuracy[h.TRAINED_STEPS], result.eval_metrics[h.TASK]['accuracy'],
                             rtol=1e-6)


def test_eval_metrics_are_written_as_json_and_predictions_as_jsonl(run):
  model_dir, result = run
  rows = h.read_jsonl(model_dir / 'inference_eval' / f'{h.TASK}-metrics.jsonl')
  metrics = {row['step']: row for row in rows}
  assert sorted(metrics) == EVAL_STEPS
  assert metrics[h.TRAINED_STEPS]['accuracy'] == pytest.approx(
      result.eval_metrics[h.TASK]['accuracy'])
  for step in EVAL_STEPS:
    rows = h.read_jsonl(model_dir / 'inference_eval' / f'{h.TASK}-{step:06}.jsonl')
    assert len(rows) == 16  # EVAL_STEPS=2 batches of 8
    assert all({'input', 'target', 'prediction'} <= set(row) for row in rows)


def test_each_checkpoint_exports_the_prompt_as_npy(run):
  model_dir, _ = run
  exports = model_dir / 'numpy_checkpoints'
  assert {p.name for p in exports.iterdir()} == {f'checkpoint_{s}' for s in CHECKPOINT_STEPS}
  for step in CHECKPOINT_STEPS:
    assert [p.name for p in (exports / f'checkpoint_{step}').iterdir()] == [
        'encoder.prompt.prompt.prompt.npy']


def test_the_npy_export_reloads_as_the_trained_prompt(run):
  model_dir, result = run
  exported = np.load(model_dir / 'numpy_checkpoints' / f'checkpoint_{h.TRAINED_STEPS}' /
                     'encoder.prompt.prompt.prompt.npy')
  trained = np.asarray(result.params['encoder']['prompt']['prompt']['prompt'])
  assert exported.dtype == np.float32 and exported.shape == (4, 64)
  np.testing.assert_array_equal(exported, trained)
