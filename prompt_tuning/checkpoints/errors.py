"""The one error type of the checkpoint readers and writers: a one-line message for the user."""

from prompt_tuning.errors import UserError


class CheckpointError(UserError, ValueError):
  """A checkpoint or prompt file is missing, corrupt, or does not fit the model.

  The message is one line that names the file and, where it applies, the
  array path with the expected and the actual shape.
  """


def one_line(error: BaseException) -> str:
  """A library's error message on one line (tensorstore and torch messages span several)."""
  return ' '.join(str(error).split()) or type(error).__name__
