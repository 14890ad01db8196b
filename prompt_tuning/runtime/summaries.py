"""Training summaries: a console progress line, and TensorBoard through clu metric writers.

Step metrics arrive as sums (loss, correct and real target tokens, examples)
and are turned into rates here, once per logging period, so the train loop
never waits on the device in between.
"""

import os
import time
from typing import Dict, List, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from clu import metric_writers

from prompt_tuning import storage


def write_config(model_dir: str, config_text: str) -> None:
  """Saves the final gin config as `MODEL_DIR/config.gin` (atomically) and as TensorBoard text.

  A different config of an earlier session of the run (resumed since) is kept
  as `config-<its date>.gin`.
  """
  if jax.process_index() != 0:
    return
  current = os.path.join(model_dir, 'config.gin')
  earlier = storage.read_text(current) if storage.exists(current) else config_text
  if earlier != config_text:  # copied aside first, so that config.gin is never missing
    written = time.strftime('%Y%m%d-%H%M%S', time.localtime(storage.modified_time(current)))
    storage.write_text(os.path.join(model_dir, f'config-{written}.gin'), earlier)
  storage.write_text(current, config_text)
  writer = metric_writers.create_default_writer(os.path.join(model_dir, 'train'),
                                                asynchronous=False)
  # Markdown renders gin's newlines and indentation as a code block.
  writer.write_texts(0, {'config': '\n'.join('    ' + l for l in config_text.splitlines())})
  writer.close()


class TrainSummaries:
  """Accumulates step metrics and writes them every `log_every` steps.

  Attributes:
    tokens_per_example: input plus target positions of one example, for tokens/s.
    prompt_names: the rows of a trained prompt bank, each of which gets its own
      '<name>/cross_ent_loss_per_token'.
  """

  def __init__(self, model_dir: str, total_steps: int, tokens_per_example: int,
               prompt_names: Sequence[str] = ()):
    self.total_steps = total_steps
    self.tokens_per_example = tokens_per_example
    self.prompt_names = tuple(prompt_names)
    self.writer = metric_writers.create_default_writer(
        os.path.join(model_dir, 'train'), just_logging=jax.process_index() > 0, asynchronous=True)
    self._pending: List[Dict[str, jax.Array]] = []
    self._since = time.perf_counter()

  def add(self, metrics: Mapping[str, jax.Array]) -> None:
    """Keeps one step's metrics on device until the next write."""
    self._pending.append(dict(metrics))

  def reset_clock(self) -> None:
    """Restarts the throughput clock (e.g. after compiling or evaluating)."""
    self._since = time.perf_counter()

  def write(self, step: int) -> Dict[str, float]:
    """Averages the pending steps, writes them to TensorBoard and the console; returns them."""
    if not self._pending:
      return {}
    # Over the steps: per-prompt metrics stay [K].
    sums = {k: np.sum([np.asarray(m[k]) for m in self._pending], axis=0) for k in self._pending[0]}
    steps = len(self._pending)
    elapsed = max(time.perf_counter() - self._since, 1e-9)
    tokens = max(sums['target_tokens'], 1.0)
    scalars = {
        'loss': sums['loss'] / steps,
        'cross_ent_loss_per_token': sums['cross_ent_loss_sum'] / tokens,
        'z_loss_per_token': sums['z_loss_sum'] / tokens,
        'accuracy': sums['correct_tokens'] / tokens,
        'timing/steps_per_second': steps / elapsed,
        'timing/examples_per_second': sums['examples'] / elapsed,
        'timing/tokens_per_second': sums['examples'] * self.tokens_per_example / elapsed,
    }
    if 'learning_rate' in sums:
      scalars['learning_rate'] = sums['learning_rate'] / steps
    for name, loss, tokens in zip(self.prompt_names, sums.get('prompt_cross_ent_loss_sum', ()),
                                  sums.get('prompt_target_tokens', ())):
      scalars[f'{name}/cross_ent_loss_per_token'] = loss / max(tokens, 1.0)
    scalars = {name: float(value) for name, value in scalars.items()}
    self.writer.write_scalars(step, scalars)
    logging.info('step %d/%d  loss %.4f  accuracy %.3f  %.2f steps/s  %.1f examples/s', step,
                 self.total_steps, scalars['loss'], scalars['accuracy'],
                 scalars['timing/steps_per_second'], scalars['timing/examples_per_second'])
    if jax.process_index() == 0:
      print(f'step {step}/{self.total_steps}  loss {scalars["loss"]:.4f}  '
            f'accuracy {scalars["accuracy"]:.3f}  {scalars["timing/steps_per_second"]:.2f} steps/s  '
            f'{scalars["timing/tokens_per_second"]:.0f} tokens/s', flush=True)
    self._pending.clear()
    self.reset_clock()
    return scalars

  def close(self) -> None:
    self.writer.flush()
    self.writer.close()
