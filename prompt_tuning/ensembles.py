"""An ensemble of K prompts for one task, run in one batched pass through one frozen model.

Each example becomes K rows, one per member (its `prompt_index`); the members'
predictions are then combined: a majority vote of the decoded outputs, or, in
rank classification, the candidate with the highest log-likelihood summed over
the members. Plain numpy on the host: no model code, no I/O.
"""

import collections
from typing import Dict, Mapping, Sequence

import numpy as np


def expand_for_members(features: Mapping[str, np.ndarray], num_members: int
                       ) -> Dict[str, np.ndarray]:
  """[B, ...] features -> [B*K, ...]: row b*K + k is example b for member k (`prompt_index` k)."""
  expanded = {name: np.repeat(value, num_members, axis=0) for name, value in features.items()}
  batch_size = next(iter(features.values())).shape[0]
  expanded['prompt_index'] = np.tile(np.arange(num_members, dtype=np.int32), batch_size)
  return expanded


def by_member(rows: np.ndarray, num_members: int) -> np.ndarray:
  """[B*K, ...] rows of `expand_for_members`'s batch -> [B, K, ...]."""
  return rows.reshape(-1, num_members, *rows.shape[1:])


def majority_vote(outputs: np.ndarray) -> np.ndarray:
  """[B, K, L] decoded tokens of K members -> [B, L], each example's most frequent output.

  Outputs are compared whole (their tokens up to EOS, then the zero padding).
  A tie goes to the lowest-numbered member among those that gave a tied
  output, so the vote is deterministic, and one member's vote is its output.
  """
  voted = np.empty((outputs.shape[0], outputs.shape[2]), outputs.dtype)
  for example, members in enumerate(outputs):
    rows = [tuple(row) for row in members.tolist()]
    counts = collections.Counter(rows)
    most = max(counts.values())
    voted[example] = next(row for row in rows if counts[row] == most)  # in member order
  return voted


def rank_sum(log_likelihoods: np.ndarray) -> np.ndarray:
  """[B, K, C] log-likelihood of each candidate under each member -> [B] best candidate index.

  The candidate whose log-likelihood summed over the members is highest (a tie
  goes to the lower candidate index).
  """
  return np.argmax(log_likelihoods.sum(axis=1), axis=-1)


def member_summary(member_metrics: Sequence[Mapping[str, float]]) -> Dict[str, float]:
  """The members' metrics by name: 'member_<k>/<metric>', and their 'mean/' and 'best/'."""
  summary = {}
  for k, metrics in enumerate(member_metrics):
    summary.update({f'member_{k}/{name}': float(value) for name, value in metrics.items()})
  for name in member_metrics[0]:
    values = [float(metrics[name]) for metrics in member_metrics]
    summary[f'mean/{name}'] = float(np.mean(values))
    summary[f'best/{name}'] = max(values)
  return summary
