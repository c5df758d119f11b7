"""The exception types that reach users as a message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad config value, missing file, unknown option).

    The command-line entry points print ``error: <message>`` on one line and exit with code 2.
    The message must name the file, key or value at fault and what would be valid.
    """


class StorageUnavailableError(BaseException):
    """The study's database stayed unreachable for longer than ``storage.outage_timeout``.

    The command-line entry points print ``error: <message>`` on one line and exit with code 3.
    Like ``KeyboardInterrupt`` it is no ``Exception``: Optuna's ``catch=(Exception,)`` and the
    objective's failure handling must not record the trial as failed (in a database that is
    down); the trial stays RUNNING and the next run retries it from its last checkpoint
    (see ``mspe_sweep/sweep/outage.py``).
    """


class WorkerFailed(Exception):
    """A launched worker process exited with a non-zero code after printing its own error.

    The entry point exits with the worker's code and adds a plain note, not a second
    ``error:`` line.
    """

    def __init__(self, code: int) -> None:
        super().__init__(f"a worker exited with code {code}; its error is above")
        self.code = code
