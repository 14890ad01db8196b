"""The training loop: resume, step, summarise, evaluate every EVAL_PERIOD, checkpoint.

A library function with plain arguments; the CLI (`prompt_tuning.train`)
only binds them from gin. Nothing is written to MODEL_DIR before every
input has been checked, including a resumed run's settings against its
checkpoints; one run at a time holds MODEL_DIR. A NaN stops the run before
it is saved; SIGTERM saves and stops at the next step.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np
import optax
from absl import logging

from prompt_tuning import ensembles, errors
from prompt_tuning.errors import UserError
from prompt_tuning.runtime import (banks, checkpointing, evaluation, inputs, partitioning,
                                   preemption, run_lock, run_setup)
from prompt_tuning.runtime import summaries as summaries_lib
from prompt_tuning.runtime.model import EncoderDecoderModel
from prompt_tuning.runtime.trainer import Trainer, TrainState

Params = Any


@dataclasses.dataclass
class TrainResult:
  """What a finished run leaves behind, for callers and tests."""
  state: TrainState
  params: Params  # the full tree: frozen and trained
  losses: Sequence[float]  # one per step run in this process's session
  eval_metrics: Dict[str, Any]


def train(*, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
          train_dataset_config: inputs.DatasetConfig,
          model_dir: str, total_steps: int, run_config: run_setup.RunConfig = run_setup.RunConfig(),
          checkpoint_config: checkpointing.CheckpointConfig = checkpointing.CheckpointConfig(),
          eval_period: int = 0, eval_config: Optional[evaluation.EvalConfig] = None,
          log_every: int = 10, config_text: Optional[str] = None,
          prompt_bank: Optional[str] = None) -> TrainResult:
  """Trains the parameters that TRAINABLE_REGEXES match, from the latest checkpoint in `model_dir`.

  Args:
    model: the model and its loss settings.
    optimizer: OPTIMIZER, of the trainable parameters (masked to them here).
    train_dataset_config: the training data (BATCH_SIZE is the global batch).
    model_dir: MODEL_DIR, where checkpoints, exports and summaries go.
    total_steps: TRAIN_STEPS, counted from step 0 (resumed runs do the rest).
    run_config: the mesh, what trains, the frozen model and its dtype, RANDOM_SEED (for
      the prompt initializer and dropout; the data order is the dataset config's seed).
    checkpoint_config: save period and how many to keep.
    eval_period: EVAL_PERIOD; 0 evaluates only at the end (when `eval_config` is given).
    eval_config: what to evaluate every `eval_period` steps and at the end.
    log_every: steps between console/TensorBoard summaries.
    config_text: the final gin config, written to MODEL_DIR/config.gin and TensorBoard.
    prompt_bank: what the prompts of the model's bank are: 'ensemble' or
      'tasks' (see `banks`); None for a model with one prompt.
  """
  rows = banks.bank_rows(prompt_bank, model, train_dataset_config)
  if rows is not None and eval_config is not None:
    eval_config = dataclasses.replace(eval_config, ensemble=rows.kind == 'ensemble',
                                      task_rows=rows.task_rows)
  run = run_setup.set_up(model, run_config, train_dataset_config)
  trainer = run.trainer(optimizer)
  state = run.initial_state(trainer)
  state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  evaluator = None
  if eval_config is not None:
    evaluator = evaluation.Evaluator(model, eval_config, run.mesh, run.shardings,
                                     os.path.join(model_dir, 'inference_eval'))
  settings = run_settings(model, train_dataset_config, total_steps, rows)

  with errors.storage_faults_reported(f'MODEL_DIR={model_dir}'), run_lock.RunLock(model_dir), \
       preemption.PreemptionWatch() as preempted:
    checkpointer = checkpointing.Checkpointer(model_dir, checkpoint_config,
                                              rows.names if rows else ())
    try:
      restored = checkpointer.restore_latest(state, settings, may_change=('TRAIN_STEPS',))
      if restored is not None:
        state = jax.device_put(restored.state, state_shardings)
        if int(state.step) >= total_steps:
          checkpointer.ensure_exported(state)
          if jax.process_index() == 0:
            print(f'already trained to step {int(state.step)} (TRAIN_STEPS={total_steps}) in '
                  f'{model_dir}: nothing to do.', flush=True)
          return TrainResult(state=state, params=run.params(state.trainable), losses=[],
                             eval_metrics={})
      # Every check has passed: from here on, MODEL_DIR is written.
      if config_text is not None:
        summaries_lib.write_config(model_dir, config_text)
      checkpointer.set_aside_corrupt()
      position = 0
      if restored is not None:
        position = restored.position
        checkpointer.ensure_exported(state)
        for name, (old, new) in checkpointing.changed_settings(restored.settings,
                                                               settings).items():
          logging.warning('%s changed from %r to %r: training on from step %d.', name, old, new,
                          int(state.step))
        logging.info('Resumed from step %d of %s.', int(state.step), model_dir)
      return _loop(_Run(run, trainer, checkpointer, settings, preempted, evaluator,
                        run_config.partitioner, rows), state, position, train_dataset_config,
                   total_steps, eval_period, log_every, model_dir)
    finally:
      checkpointer.close()


def run_settings(model: EncoderDecoderModel, dataset_config: inputs.DatasetConfig,
                 total_steps: int, rows: Optional[banks.BankRows] = None) -> Dict[str, Any]:
  """What a resumed run must share with the one that saved, by macro name (TRAIN_STEPS may grow).

  Stored in every checkpoint, as JSON values.
  """
  config = model.module.config
  settings = {
      'MIXTURE_OR_TASK_NAME': dataset_config.mixture_or_task_name,
      'TASK_FEATURE_LENGTHS': dict(dataset_config.task_feature_lengths),
      'BATCH_SIZE': dataset_config.batch_size,  # the input position counts batches
      'SHUFFLE_TRAIN_EXAMPLES': dataset_config.shuffle,
      'RANDOM_SEED': dataset_config.seed,  # the shuffled order
      'TRAIN_STEPS': total_steps,
      # The architecture: its integer fields (not dtypes or dropout, which may change).
      'model': {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                if type(getattr(config, f.name)) is int},  # pylint: disable=unidiomatic-typecheck
  }
  prompt_config = getattr(model.module, 'prompt_config', None)
  if prompt_config is not None:
    settings['PROMPT_LENGTH'] = prompt_config.length
  if rows is not None:
    settings['prompt_bank'] = {'kind': rows.kind, 'names': list(rows.names)}
  return json.loads(json.dumps(settings))  # as they read back: lists, string keys


class DivergedError(UserError):
  """The loss or the trained parameters became NaN or infinite."""


@dataclasses.dataclass
class _Run:
  """What the loop works with, besides the data and the schedule."""
  setup: run_setup.RunSetup
  trainer: Trainer
  checkpointer: checkpointing.Checkpointer
  settings: Dict[str, Any]
  preempted: preemption.PreemptionWatch
  evaluator: Optional[evaluation.Evaluator]
  partitioner: partitioning.Partitioner
  bank: Optional[banks.BankRows]


def _diverged(unchecked: List[Tuple[int, jax.Array]], latest_saved: Optional[int]) -> None:
  """Raises DivergedError at the first step whose finite flag is False; waits on the device."""
  for step, finite in unchecked:
    if not bool(np.asarray(finite)):
      saved = 'none' if latest_saved is None else f'checkpoint_{latest_saved}'
      raise DivergedError(f'The loss or the trained parameters became NaN or infinite at step '
                          f'{step}; nothing from then on was saved (latest checkpoint: {saved}). '
                          'Lower LEARNING_RATE, or check the data.')
  unchecked.clear()


def _loop(run: _Run, state: TrainState, position: int, dataset_config: inputs.DatasetConfig,
          total_steps: int, eval_period: int, log_every: int, model_dir: str) -> TrainResult:
  """Steps from `state` to TOTAL_STEPS (or to a preemption), saving, logging and evaluating."""
  step_fn = run.trainer.jit_train_step(jax.tree_util.tree_map(lambda x: x.sharding, state))
  bank = run.bank
  batches = inputs.train_batches(dataset_config, skip_batches=position,
                                 task_rows=bank.task_rows if bank else None)
  tokens_per_example = sum(shape[1] for name, shape in run.setup.input_shapes.items()
                           if name in ('encoder_input_tokens', 'decoder_target_tokens'))
  summaries = summaries_lib.TrainSummaries(model_dir, total_steps, tokens_per_example,
                                           bank.names if bank else ())
  checkpointer = run.checkpointer
  losses, eval_metrics = [], {}
  unchecked: List[Tuple[int, jax.Array]] = []  # (step, finite flag) not yet looked at
  step = int(state.step)
  try:
    with jax.set_mesh(run.setup.mesh), run.partitioner.activation_context():
      while step < total_steps:
        batch = next(batches)
        if bank and bank.ensemble_size:  # every member trains on every example
          batch = ensembles.expand_for_members(batch, bank.ensemble_size)
        batch = partitioning.global_batch(batch, run.setup.mesh)
        state, metrics = step_fn(state, run.setup.frozen, batch)
        position += 1
        step += 1
        unchecked.append((step, metrics.pop('finite')))
        summaries.add(metrics)
        losses.append(metrics['loss'])
        stop = run.preempted.reached(step)
        if step % log_every == 0 or step == total_steps:
          summaries.write(step)
          _diverged(unchecked, checkpointer.latest_step())
        if stop or step == total_steps or step % checkpointer.period == 0:
          _diverged(unchecked, checkpointer.latest_step())  # nothing non-finite is ever saved
          checkpointer.save(state, position, run.settings, force=stop or step == total_steps)
        if stop:
          raise errors.Preempted(f'Preempted (SIGTERM) at step {step}: saved '
                                 f'{checkpointer.checkpoint_dir(step)}; run the same command '
                                 'to resume.')
        if run.evaluator and eval_period and step % eval_period == 0 and step != total_steps:
          eval_metrics = run.evaluator.evaluate(run.setup.params(state.trainable), step)
          summaries.reset_clock()
      if run.evaluator and int(state.step) == total_steps:
        eval_metrics = run.evaluator.evaluate(run.setup.params(state.trainable), step)
  finally:
    summaries.close()
  return TrainResult(state=state, params=run.setup.params(state.trainable),
                     losses=[float(np.asarray(l)) for l in losses], eval_metrics=eval_metrics)
