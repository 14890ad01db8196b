"""The root of the project's user-facing errors: a wrong setting, file or input, told in one line.

Each layer raises its own subclass where it checks what the user gave it. The
command line reports these in one line that names the culprit; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A configuration, flag, file or input is wrong; the message is one line that names it."""


class Preempted(Exception):
  """Training stopped early on SIGTERM, after saving a checkpoint; rerunning resumes it."""

  exit_code = 143  # 128 + SIGTERM: the job did not finish, so schedulers may restart it
