"""Search-space grammar -> Optuna distributions, define-by-run suggestion, override strings.

The grammar is the Hydra Optuna sweeper's, parsed by hydra-core's own override parser:

- ``choice(a, b, ...)`` (or the simple form ``a,b``) -> ``CategoricalDistribution``; values
  keep the types the parser gives them (int, float, str, bool).
- ``range(start, stop[, step])`` -> ``IntDistribution`` (all ints) or ``FloatDistribution``
  with ``step``. Hydra's ``range`` is end-exclusive like Python's: the distribution holds
  exactly the values Hydra's own sweep would visit, ``start, start + step, ... < stop``, so
  ``high`` is the last of them (``range(1, 5)`` -> ints 1..4). The Optuna sweeper plugin
  passes ``stop`` as an inclusive ``high`` (``range(1, 5)`` could give 5) but enumerates
  ``[start, stop)`` for its grid sampler; we follow Hydra's definition in both places.
- ``interval(a, b)`` -> ``FloatDistribution(a, b)`` (Hydra makes interval ends floats);
  ``tag(int, interval(a, b))`` -> ``IntDistribution(a, b)`` with both ends inclusive;
  ``tag(log, ...)`` sets ``log=True`` on an interval.
- ``shuffle(...)`` is accepted and ignored: order means nothing to a sampler.

Conditional params: a param with ``when: {other: [values]}`` is suggested only when every
named, earlier param was suggested with one of the listed values; otherwise it is not
suggested at all, so it is absent from ``trial.params``, no trial is spent on a value that
cannot matter, and the sampler never sees a meaningless value. TPE with
``multivariate=True, group=True`` (our default) splits the history into the sub-spaces that
were actually sampled together and models each one jointly, which is how Optuna handles such
define-by-run conditional spaces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    OverrideType,
    Quote,
    QuotedString,
    RangeSweep,
)
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from mspe_sweep.text import one_line

if TYPE_CHECKING:
    import optuna

    from mspe_sweep.sweep.spec import StudySpec

GRAMMAR_HINT = "choice(a, b, ...), range(start, stop[, step]), interval(low, high), tag(log, ...)"
_TAGS = frozenset({"log", "int"})
_PARSER = OverridesParser.create()


class GrammarError(ValueError):
    """A grammar string that does not describe a valid search dimension (one-line message)."""


def parse_distribution(key: str, text: str) -> BaseDistribution:
    """Parses one ``params`` entry into an Optuna distribution.

    Args:
        key: The run-config key being searched, e.g. ``training.optimizer.lr``.
        text: Its grammar string, e.g. ``tag(log, interval(1e-5, 1e-2))``.

    Returns:
        The distribution.

    Raises:
        GrammarError: Unparsable text, a plain value, or an empty/invalid dimension.
    """
    try:
        override = _PARSER.parse_override(f"{key}={text}")
    except HydraException as exc:
        raise GrammarError(f"cannot parse {text!r}: {_in_words(text, exc)}; use "
                           f"{GRAMMAR_HINT}") from exc
    if override.type != OverrideType.CHANGE or override.package is not None:
        raise GrammarError(f"{key!r} must be a plain config key (no +, ~, ++ or @package)")
    if not override.is_sweep_override():
        raise GrammarError(f"{text!r} is a plain value, not a search; move '{key}={text}' to "
                           f"`fixed` or use {GRAMMAR_HINT}")
    sweep = override.value()
    if not isinstance(sweep, (ChoiceSweep, RangeSweep, IntervalSweep)):
        raise GrammarError(f"{text!r} is not supported; use {GRAMMAR_HINT}")
    unknown = set(sweep.tags) - _TAGS
    if unknown:
        raise GrammarError(f"unknown tag(s) {sorted(unknown)}; valid tags: {sorted(_TAGS)}")
    if isinstance(sweep, ChoiceSweep):
        return _choice(sweep.list)
    return _range(sweep) if isinstance(sweep, RangeSweep) else _interval(sweep)


def _in_words(text: str, exc: Exception) -> str:
    """What is wrong with a grammar string, in words instead of the parser's internals
    (``LexerNoViableAltException: ...; ^``)."""
    opened, closed = text.count("("), text.count(")")
    reason = one_line(exc)
    unknown = re.search(r"Unknown function '(\w+)'", reason)
    if unknown:
        return f"unknown function {unknown.group(1)!r} (valid: choice, range, interval, tag)"
    if opened != closed:
        return f"unbalanced parentheses ({opened} '(' but {closed} ')')"
    if re.search(r",\s*(\)|$)", text) or re.search(r"\(\s*,|,\s*,", text):
        return "a value is missing next to a ','"
    if "missing a required argument" in reason:
        return "a function is missing an argument (interval(low, high) takes two numbers " \
               "separated by a comma)"
    if "incompatible with" in reason:
        return "interval() and range() take numbers"
    return f"not in the search-space grammar ({reason})"


def _choice(values: Sequence[Any]) -> CategoricalDistribution:
    if not values:
        raise GrammarError("empty choice()")
    for value in values:
        if not isinstance(value, (str, int, float, bool)):
            raise GrammarError(f"choice value {value!r} must be a str, int, float or bool")
    seen = [(type(v), v) for v in values]
    if len(set(seen)) != len(seen):
        raise GrammarError(f"choice{tuple(values)} lists a value twice")
    return CategoricalDistribution(list(values))


def _range(sweep: RangeSweep) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if sweep.tags:
        raise GrammarError("tags are not allowed on range(); use tag(log, interval(a, b))")
    if step <= 0:
        raise GrammarError(f"range step must be > 0, got {step}")
    # Decimal arithmetic on the written numbers avoids 0.1 + 3 * 0.1 = 0.4000000000000001.
    d_start, d_stop, d_step = (Decimal(repr(x)) for x in (start, stop, step))
    count = math.ceil((d_stop - d_start) / d_step)
    if count < 1:
        raise GrammarError(f"range({start}, {stop}, {step}) is empty (stop must exceed start)")
    last = d_start + (count - 1) * d_step
    # shuffle(range(...)) only reorders Hydra's own sweep; order means nothing to a sampler.
    if all(isinstance(x, int) for x in (start, stop, step)):
        return IntDistribution(int(start), int(last), step=int(step))
    return FloatDistribution(float(start), float(last), step=float(step))


def _interval(sweep: IntervalSweep) -> BaseDistribution:
    low, high, log = sweep.start, sweep.end, "log" in sweep.tags
    if not low < high:
        raise GrammarError(f"interval({low}, {high}) is empty or inverted (need low < high)")
    if log and low <= 0:
        raise GrammarError(f"log interval({low}, {high}) must lie above 0")
    if "int" in sweep.tags:
        if not (float(low).is_integer() and float(high).is_integer()):
            raise GrammarError(f"tag(int, interval({low}, {high})) needs integer ends")
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def discrete_values(distribution: BaseDistribution) -> list[Any] | None:
    """Lists every value of a discrete distribution (for grid search and ``when`` checks).

    Args:
        distribution: A distribution made by :func:`parse_distribution`.

    Returns:
        The values in order, or ``None`` for a continuous or log-scaled distribution.
    """
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        low, step = Decimal(repr(distribution.low)), Decimal(repr(distribution.step))
        count = int((Decimal(repr(distribution.high)) - low) / step) + 1
        return [float(low + i * step) for i in range(count)]
    return None


def same_value(a: Any, b: Any) -> bool:
    """Compares two param values without letting ``True == 1`` or ``"1" == 1`` match."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def parse_when(raw: Any, earlier: Mapping[str, BaseDistribution]) -> dict[str, tuple[Any, ...]]:
    """Validates a ``when`` condition against the params defined before it.

    Args:
        raw: ``{param key: allowed value or list of values}`` as written.
        earlier: Distributions of the params above this one, in file order.

    Returns:
        ``{param key: tuple of allowed values}``.

    Raises:
        GrammarError: Not a mapping, an unknown or later or continuous param, or a value that
            param cannot take.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise GrammarError("when: must map earlier param keys to allowed values")
    when = {}
    for name, allowed in raw.items():
        if name not in earlier:
            raise GrammarError(f"when: {name!r} is not a param defined above this one; "
                               f"valid: {', '.join(earlier) or '(none)'}")
        values = discrete_values(earlier[name])
        if values is None:
            raise GrammarError(f"when: {name!r} is continuous; conditions need choice/range")
        allowed = list(allowed) if isinstance(allowed, (list, tuple)) else [allowed]
        bad = [a for a in allowed if not any(same_value(a, v) for v in values)]
        if bad or not allowed:
            raise GrammarError(f"when.{name}: {bad or 'empty list'} not among its values "
                               f"{values}")
        when[name] = tuple(allowed)
    return when


def condition_holds(when: Mapping[str, Sequence[Any]], values: Mapping[str, Any]) -> bool:
    """True when every param named in ``when`` was suggested with one of its listed values."""
    return all(
        name in values and any(same_value(values[name], ok) for ok in allowed)
        for name, allowed in when.items()
    )


def suggest(trial: optuna.trial.Trial, spec: StudySpec) -> dict[str, Any]:
    """Suggests the study's params on a trial, define-by-run, in file order.

    Args:
        trial: The trial to suggest on (a retried or enqueued trial returns its fixed values).
        spec: The validated study spec.

    Returns:
        ``{key: value}`` for the params that were suggested; params whose ``when`` condition
        is false are absent.
    """
    values: dict[str, Any] = {}
    for param in spec.params:
        if not condition_holds(param.when, values):
            continue
        dist = param.distribution
        if isinstance(dist, CategoricalDistribution):
            values[param.key] = trial.suggest_categorical(param.key, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[param.key] = trial.suggest_int(
                param.key, dist.low, dist.high, step=dist.step, log=dist.log
            )
        else:
            assert isinstance(dist, FloatDistribution), dist
            values[param.key] = trial.suggest_float(
                param.key, dist.low, dist.high, step=dist.step, log=dist.log
            )
    return values


def format_value(value: Any) -> str:
    """Formats a param value so that Hydra's override parser reads back the same value.

    Floats use ``repr`` (shortest lossless form); strings are quoted only when the bare text
    would parse as something else (a number, ``true``, ``null``, a sweep, ...).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    try:
        parsed = _PARSER.parse_override(f"k={text}")
        if not parsed.is_sweep_override() and parsed.value() == text:
            return text
    except HydraException:
        pass  # Unparsable bare: quoting below makes it a plain string.
    return QuotedString(text=text, quote=Quote.single).with_quotes()


def to_overrides(params: Mapping[str, Any]) -> list[str]:
    """Turns suggested params into Hydra override strings, e.g. ``pe=multiscale``.

    Args:
        params: ``{key: value}`` as returned by :func:`suggest`.

    Returns:
        ``["key=value", ...]`` in the order of ``params``.
    """
    return [f"{key}={format_value(value)}" for key, value in params.items()]
