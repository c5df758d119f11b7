"""What every `python -m mspe_sweep.<command>` shares: argument handling, logging, exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from mspe_sweep.config import group_options
from mspe_sweep.errors import StorageUnavailableError, UserError, WorkerFailed
from mspe_sweep.text import mask_secrets
from mspe_sweep.training import NonFiniteLossError

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 1
EXIT_STORAGE_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


def groups_help() -> str:
    """One line per config group with its options, for ``--help`` texts."""
    return "\n".join(
        f"  {group}={'|'.join(options)}" for group, options in group_options().items()
    )


def run_command(body: Callable[[list[str]], object], usage: str, argv: Sequence[str] | None,
                show_config: Callable[[list[str]], str] | None = None) -> int:
    """Run an entry point's body on its ``key=value`` arguments and map outcomes to exit codes.

    Args:
        body: Receives the override strings; raises :class:`UserError` for user mistakes.
        usage: Printed for ``-h`` / ``--help``.
        argv: Arguments without the program name; ``None`` means ``sys.argv[1:]``.
        show_config: For Hydra's ``--cfg job``: returns the composed config (YAML) for the
            override strings, which is printed instead of running ``body``.

    Returns:
        0 on success, 2 for a user error (printed as one line), 3 when the study's database
        stayed unreachable past ``storage.outage_timeout`` (one line), 130 when interrupted.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        print(usage.rstrip())
        return EXIT_OK
    configure_logging()
    try:
        wants_config, args = take_cfg_flag(args, show_config is not None)
        flags = [arg for arg in args if arg.startswith("-")]
        if flags:
            raise UserError(f"unknown option {flags[0]!r}: arguments are key=value overrides "
                            "(see --help)")
        if wants_config:
            print(show_config(args).rstrip())
        else:
            body(args)
    except UserError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except StorageUnavailableError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_STORAGE_UNAVAILABLE
    except WorkerFailed as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return exc.code
    except NonFiniteLossError as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def take_cfg_flag(args: list[str], supported: bool) -> tuple[bool, list[str]]:
    """Take Hydra's ``--cfg job`` (also ``--cfg=job``, ``-c job``) out of the arguments.

    Raises:
        UserError: ``--cfg`` on a command without a config to show, or another value than
            ``job`` (Hydra's ``hydra`` and ``all`` describe Hydra's own runtime, which we do
            not use).
    """
    for index, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name not in ("--cfg", "-c"):
            continue
        if not eq:
            value = args[index + 1] if index + 1 < len(args) else ""
        if not supported:
            raise UserError(f"{name}: this command has no config to show (see --help)")
        if value != "job":
            raise UserError(f"{name} {value}: only '{name} job' is supported (prints the "
                            "composed config and exits)")
        return True, args[:index] + args[index + (1 if eq else 2):]
    return False, args


def configure_logging(level: int = logging.INFO) -> None:
    """Plain one-line messages on stderr for our loggers; libraries keep their own settings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("mspe_sweep")
    ours.handlers[:] = [handler]
    ours.setLevel(level)


def split_key_value(args: Sequence[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Take ``key=value`` arguments for the given keys out of an override list.

    Returns:
        ``(taken, rest)``: the values of the requested keys, and every other argument in order.
    """
    taken: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key in keys:
            taken[key] = value
        else:
            rest.append(arg)
    return taken, rest
