"""The one exception type that reaches users as a message instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad config value, missing file, unknown option).

    The command-line entry points print ``error: <message>`` on one line and exit with code 2.
    The message must name the file, key or value at fault and what would be valid.
    """
