"""When to save and stop early: on SIGTERM, the signal preemption sends, as T5X does.

One process catches the signal itself and stops at the next step boundary.
Several processes agree on a step through JAX's preemption sync point (its
distributed runtime handles SIGTERM then), so that all save the same step.
"""

import signal
import threading
from typing import Optional

import jax
from jax.experimental import multihost_utils


class PreemptionWatch:
  """A `with` block during which SIGTERM asks the training loop to save and stop."""

  def __init__(self):
    self._signalled = False
    self._previous: Optional[object] = None

  def __enter__(self) -> 'PreemptionWatch':
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    self._signalled = True

  def reached(self, step: int) -> bool:
    """Whether to save at `step` and stop; call it at every step, on every process."""
    return self._signalled or multihost_utils.reached_preemption_sync_point(step)
