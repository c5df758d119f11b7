"""Text that reaches the user: one-line messages and URLs with their secrets masked.

Every message we print (errors, start-up lines, warnings) goes through these two ideas, so a
storage or tracking password never reaches a terminal, a log file, MLflow params or tags.
"""

from __future__ import annotations

import re

_SECRET_QUERY = re.compile(r"([?&;](?:password|passwd|pwd|pass|secret|token|sslpassword)=)"
                           r"[^&;#\s]*", re.IGNORECASE)
# A URL inside free text: a scheme, then everything up to the next blank or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"]+")


def one_line(text: object, limit: int | None = None) -> str:
    """Collapses a (possibly multi-line) message into one line.

    Args:
        text: The message (an exception is fine).
        limit: Longest result; a longer one keeps its start and its end, where HTTP clients
            and drivers put the root cause.
    """
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        head = limit // 2 - 10
        flat = f"{flat[:head]} ... {flat[-(limit - head - 5):]}"
    return flat


def first_line(error: object) -> str:
    """A driver's own reason: the first non-empty line of its message (its type's name when
    the message is empty); the lines after it are context and hints."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def mask_url(url: str) -> str:
    """Replaces the password of a URL with ``***``, also in its query string.

    Works on text that SQLAlchemy cannot parse as well (a password holding ``@`` or ``/``):
    the user-info part is everything up to the last ``@`` before the query string.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        head, qmark, query = rest.partition("?")
        userinfo, at, host = head.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        url = f"{scheme}{sep}{userinfo}{at}{host}{qmark}{query}"
    return _SECRET_QUERY.sub(r"\1***", url)


def mask_secrets(text: str) -> str:
    """Masks the password of every URL that appears in a message (see :func:`mask_url`)."""
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
