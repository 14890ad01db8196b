"""The demo's frozen model: a tiny T5 1.1, pre-trained here on the demo's pre-training tasks.

`frozen_model_checkpoint()` returns the path of that model's checkpoint,
training it first when no earlier run left one in the cache folder. The
checkpoint is written by this project's own runtime in T5X's orbax layout,
so it is read like any other INITIAL_CHECKPOINT_PATH.

The pre-training ends on a learning rate decayed to zero, so that the model
settles: with a constant rate its last steps leave it wherever the last
batches pushed it, and whether a prompt can then be tuned on it depends on
the machine's floating point. Decayed, and with the demo's prompt recipe
(configs/demo/prompt_tuning_demo.gin), every prompt seed tried reaches 100% on
frozen models pre-trained from different seeds, which is what another
machine's arithmetic amounts to.
"""

import os
import shutil
import tempfile

from prompt_tuning.demo import tasks
from prompt_tuning.models import t5
from prompt_tuning.runtime import checkpointing, inputs, model, optimizer, run_setup, train_loop

# Shape of the demo model, the row of t5.SIZES that configs/demo/demo_model.gin names too.
CONFIG = t5.config_for_size('demo')
FEATURE_LENGTHS = {'inputs': 16, 'targets': 4}
PRETRAINING_STEPS = 2000
# Adafactor: linear warm-up to the peak, then cosine decay to zero at the last step.
PEAK_LEARNING_RATE = 0.01
WARMUP_STEPS = 100
# Part of the cache folder's name: a model cached by an earlier recipe is never reused.
RECIPE_VERSION = 2


def frozen_model_checkpoint(directory: str = '', seed: int = 0) -> str:
  """The frozen demo model's checkpoint path; pre-trains it (about a minute) when missing.

  Args:
    directory: where the model is kept; by default `frozen_t5_v<RECIPE_VERSION>` in the cache
      folder (with `_seed<seed>` appended for a seed other than 0).
    seed: the pre-training's RANDOM_SEED (initialisation and data order). The demo uses 0;
      other seeds stand in for another machine, whose floating point gives another model.
  """
  if not directory:
    name = f'frozen_t5_v{RECIPE_VERSION}' + (f'_seed{seed}' if seed else '')
    directory = os.path.join(tasks.cache_dir(), name)
  checkpoint = os.path.join(directory, f'checkpoint_{PRETRAINING_STEPS}')
  if os.path.isdir(checkpoint):
    return checkpoint
  print(f'Pre-training the demo\'s frozen model into {directory} (once)...', flush=True)
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.frozen_t5.', dir=parent)
  learning_rate = optimizer.warmup_then_decay(PEAK_LEARNING_RATE, WARMUP_STEPS,
                                              PRETRAINING_STEPS - WARMUP_STEPS)
  pretrain = model.EncoderDecoderModel(t5.Transformer(CONFIG), tasks.VOCABULARY,
                                       loss_normalizing_factor='NUM_REAL_TARGET_TOKENS')
  train_loop.train(
      model=pretrain, optimizer=optimizer.adafactor(learning_rate=learning_rate),
      model_dir=staging, total_steps=PRETRAINING_STEPS,
      train_dataset_config=inputs.DatasetConfig('demo_pretraining', FEATURE_LENGTHS, batch_size=32,
                                                seed=seed),
      checkpoint_config=checkpointing.CheckpointConfig(period=PRETRAINING_STEPS, keep=1),
      run_config=run_setup.RunConfig(trainable_regexes=optimizer.ALL_PARAMETERS, random_seed=seed),
      log_every=500)
  # Another process may have finished first; either copy is the same model.
  if not os.path.isdir(checkpoint):
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
  else:
    shutil.rmtree(staging)
  return checkpoint
