"""The demo's frozen model: a tiny T5 1.1, pre-trained here on the instructed demo tasks.

`frozen_model_checkpoint()` returns the path of that model's checkpoint,
training it first when no earlier run left one in the cache folder. The
checkpoint is written by this project's own runtime in T5X's orbax layout,
so it is read like any other INITIAL_CHECKPOINT_PATH.
"""

import os
import shutil
import tempfile

from prompt_tuning.demo import tasks
from prompt_tuning.models import t5
from prompt_tuning.runtime import checkpointing, inputs, model, optimizer, train_loop

# Shape of the demo model (configs/demo/prompt_tuning_demo.gin repeats it for the prompt run).
CONFIG = t5.T5Config(vocab_size=tasks.VOCAB_SIZE, emb_dim=64, num_heads=4, head_dim=16,
                     num_encoder_layers=2, num_decoder_layers=2, mlp_dim=128,
                     relative_attention_num_buckets=16, relative_attention_max_distance=32)
FEATURE_LENGTHS = {'inputs': 16, 'targets': 4}
PRETRAINING_STEPS = 1200


def frozen_model_checkpoint(directory: str = '') -> str:
  """The frozen demo model's checkpoint path; pre-trains it (about a minute) when missing."""
  directory = directory or os.path.join(tasks.cache_dir(), 'frozen_t5')
  checkpoint = os.path.join(directory, f'checkpoint_{PRETRAINING_STEPS}')
  if os.path.isdir(checkpoint):
    return checkpoint
  print(f'Pre-training the demo\'s frozen model into {directory} (once)...', flush=True)
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.frozen_t5.', dir=parent)
  pretrain = model.EncoderDecoderModel(
      t5.Transformer(CONFIG), tasks.VOCABULARY, optimizer.adafactor(learning_rate=0.01),
      loss_normalizing_factor='NUM_REAL_TARGET_TOKENS')
  train_loop.train(
      model=pretrain, model_dir=staging, total_steps=PRETRAINING_STEPS,
      train_dataset_config=inputs.DatasetConfig('demo_pretraining', FEATURE_LENGTHS, batch_size=32),
      checkpoint_config=checkpointing.CheckpointConfig(period=PRETRAINING_STEPS, keep=1),
      trainable_regexes=optimizer.ALL_PARAMETERS, log_every=250)
  # Another process may have finished first; either copy is the same model.
  if not os.path.isdir(checkpoint):
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
  else:
    shutil.rmtree(staging)
  return checkpoint
