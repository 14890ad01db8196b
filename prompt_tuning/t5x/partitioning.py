"""How T5X's partitioner places the prompt: its logical axes are replicated on every device.

The prompt is small (`[P, H]`, or `[K, P, H]` for a bank), and every example
of every data shard reads all of it, so it is not split.
"""

from typing import Optional

from t5x import partitioning

PROMPT_AXIS_RULES = (('prompt', None), ('prompt_embed', None), ('prompt_bank', None))


def logical_axis_rules(additional_rules: Optional[partitioning.LogicalAxisRules] = None
                       ) -> partitioning.LogicalAxisRules:
  """T5X's standard logical axis rules, with the prompt axes replicated."""
  return partitioning.standard_logical_axis_rules(
      additional_rules=PROMPT_AXIS_RULES + tuple(additional_rules or ()))
