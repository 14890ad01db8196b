"""The one exception the data layer raises for bad data or bad data settings.

Its message is one line that names the file (and line), field or setting at fault and what was
expected; it knows nothing about where the data comes from.
"""

from prompt_tuning.errors import UserError


class DataError(UserError, ValueError):
  """Bad or missing data, or a data setting that cannot work (one-line message)."""
