"""The training loop: resume, step, summarise, evaluate every EVAL_PERIOD, checkpoint.

A library function with plain arguments; the CLI (`prompt_tuning.train`)
only binds them from gin. Nothing is written to MODEL_DIR before every
input has been checked.
"""

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from prompt_tuning.runtime import checkpointing, evaluation, inputs, initial_params, partitioning
from prompt_tuning.runtime import summaries as summaries_lib
from prompt_tuning.runtime import optimizer as optim
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


def prepare(model: EncoderDecoderModel, dataset_config: inputs.DatasetConfig,
            partitioner: partitioning.Partitioner, trainable_regexes: Sequence[str]):
  """Checks the configuration and lays out the run; raises before anything is written.

  Returns (mesh, model feature shapes, param shardings, labels).
  """
  mesh = partitioner.make_mesh()
  partitioning.check_batch_size(dataset_config.batch_size, mesh)
  inputs.import_task_module(dataset_config.module)
  inputs.get_mixture_or_task(dataset_config.mixture_or_task_name)
  shapes = inputs.model_feature_shapes(dataset_config)
  boxed = model.abstract_variables(shapes)['params']
  shardings = partitioner.shardings(mesh, boxed)
  labels = optim.trainable_labels(boxed, trainable_regexes)
  return mesh, shapes, shardings, labels


def train(*, model: EncoderDecoderModel, train_dataset_config: inputs.DatasetConfig,
          model_dir: str, total_steps: int, partitioner: partitioning.Partitioner = partitioning.Partitioner(),
          checkpoint_config: checkpointing.CheckpointConfig = checkpointing.CheckpointConfig(),
          trainable_regexes: Sequence[str] = optim.PROMPT_ONLY,
          initial_checkpoint_path: Optional[str] = None, frozen_dtype: Any = jnp.float32,
          random_seed: int = 0, eval_period: int = 0,
          eval_config: Optional[evaluation.EvalConfig] = None, log_every: int = 10,
          config_text: Optional[str] = None) -> TrainResult:
  """Trains the parameters that `trainable_regexes` match, from the latest checkpoint in `model_dir`.

  Args:
    model: the model, its optimizer and loss settings.
    train_dataset_config: the training data (BATCH_SIZE is the global batch).
    model_dir: MODEL_DIR, where checkpoints, exports and summaries go.
    total_steps: TRAIN_STEPS, counted from step 0 (resumed runs do the rest).
    partitioner: the mesh and logical-axis rules.
    checkpoint_config: save period and how many to keep.
    trainable_regexes: full-match regexes over '/'-joined parameter paths.
    initial_checkpoint_path: INITIAL_CHECKPOINT_PATH of the frozen model.
    frozen_dtype: dtype the frozen parameters are kept in.
    random_seed: RANDOM_SEED, for the prompt initializer, dropout and shuffling.
    eval_period: EVAL_PERIOD; 0 evaluates only at the end (when `eval_config` is given).
    eval_config: what to evaluate every `eval_period` steps and at the end.
    log_every: steps between console/TensorBoard summaries.
    config_text: the final gin config, written to MODEL_DIR/config.gin and TensorBoard.
  """
  mesh, shapes, shardings, labels = prepare(model, train_dataset_config, partitioner,
                                            trainable_regexes)
  params = initial_params.initial_params(model, shapes, shardings, labels, initial_checkpoint_path,
                                         frozen_dtype, random_seed)
  trainable, frozen = optim.split(params, labels)
  trainer = Trainer(model, labels, shardings, mesh)
  state = trainer.create_state(trainable, random_seed)
  state_shardings = jax.tree_util.tree_map(lambda x: x.sharding, state)
  evaluator = None
  if eval_config is not None:
    evaluator = evaluation.Evaluator(model, eval_config, mesh, shardings,
                                     os.path.join(model_dir, 'inference_eval'))

  # Every input has been checked: from here on, MODEL_DIR is written.
  if config_text is not None:
    summaries_lib.write_config(model_dir, config_text)
  checkpointer = checkpointing.Checkpointer(model_dir, checkpoint_config)
  position = 0
  if checkpointer.latest_step() is not None:
    state, position = checkpointer.restore(state)
    state = jax.device_put(state, state_shardings)
    logging.info('Resumed from step %d of %s.', int(state.step), model_dir)

  step_fn = trainer.jit_train_step(state_shardings)
  batches = inputs.train_batches(train_dataset_config, skip_batches=position)
  tokens_per_example = sum(shape[1] for name, shape in shapes.items()
                           if name in ('encoder_input_tokens', 'decoder_target_tokens'))
  summaries = summaries_lib.TrainSummaries(model_dir, total_steps, tokens_per_example)
  losses, eval_metrics = [], {}
  step = int(state.step)
  with jax.set_mesh(mesh), partitioner.activation_context():
    while step < total_steps:
      batch = partitioning.global_batch(next(batches), mesh)
      state, metrics = step_fn(state, frozen, batch)
      position += 1
      step += 1
      summaries.add(metrics)
      losses.append(metrics['loss'])
      if step % log_every == 0 or step == total_steps:
        summaries.write(step)
      checkpointer.save(state, position, force=step == total_steps)
      if evaluator and eval_period and step % eval_period == 0 and step != total_steps:
        eval_metrics = evaluator.evaluate(optim.merge(state.trainable, frozen), step)
        summaries.reset_clock()
    if evaluator and int(state.step) == total_steps:
      eval_metrics = evaluator.evaluate(optim.merge(state.trainable, frozen), step)
  summaries.close()
  checkpointer.close()
  return TrainResult(state=state, params=optim.merge(state.trainable, frozen),
                     losses=[float(np.asarray(l)) for l in losses], eval_metrics=eval_metrics)
