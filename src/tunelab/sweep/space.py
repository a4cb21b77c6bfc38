"""What a sweep varies: each training flag given a list (`--lora-r 8,16`) or a range
(`--learning-rate 1e-5..1e-3`), and the trials a grid makes of them.

A flag given one value is not varied: it goes into every trial's config as it is. A list
is a grid axis (or a categorical choice for TPE); a range needs `--trials N`, because a grid
cannot enumerate it. Learning rates are searched on a log scale: 1e-5..1e-3 spans two
decades, and a linear draw would almost never try the lower one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from tunelab.config import FLAG_NAMES, choices, declared, value_type
from tunelab.errors import UsageError

# The TrainConfig keys a sweep may vary (TrainConfig declares which), with the type of their
# values.
SWEEPABLE: dict[str, type] = {key: value_type(key) for key in declared(sweep=True)}
LOG_SCALE = frozenset({"learning_rate"})
RANGE = ".."
FIX = "give one value, values separated by commas (1e-4,5e-4) or a range LOW..HIGH"


@dataclass(frozen=True)
class Choices:
    """The values of a list-valued flag, in the order given."""

    values: tuple[Any, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class Range:
    """LOW..HIGH, sampled by TPE; `log` for learning rates, `integer` for int keys."""

    low: float
    high: float
    log: bool
    integer: bool

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "integer": self.integer}


Param = Choices | Range
Space = dict[str, Param]


def param_from_dict(data: dict[str, Any]) -> Param:
    if "choices" in data:
        return Choices(tuple(data["choices"]))
    return Range(data["low"], data["high"], data["log"], data["integer"])


def parse_flags(given: dict[str, str | None]) -> tuple[dict[str, Any], Space]:
    """Split the sweepable flags the user gave into fixed values (one each) and the space
    (every flag with a list or a range). UsageError names the flag and the bad value."""
    fixed: dict[str, Any] = {}
    space: Space = {}
    for key, text in given.items():
        if text is None:
            continue
        param = parse_param(key, text)
        if isinstance(param, Choices) and len(param.values) == 1:
            fixed[key] = param.values[0]
        else:
            space[key] = param
    return fixed, space


def parse_param(key: str, text: str) -> Param:
    """One flag's value: `a`, `a,b,c` or `low..high`."""
    flag = f"{FLAG_NAMES[key]} {text}"
    kind = SWEEPABLE[key]
    if RANGE in text:
        if kind is str:
            raise UsageError(f"{flag}: a range needs numbers", fix="list the values: a,b")
        low, _, high = text.partition(RANGE)
        bounds = _number(flag, kind, low), _number(flag, kind, high)
        if not bounds[0] < bounds[1]:
            raise UsageError(f"{flag}: the range's low end must be below its high end",
                             fix=f"e.g. {FLAG_NAMES[key]} {bounds[1]}{RANGE}{bounds[0]}")
        log = key in LOG_SCALE
        if log and bounds[0] <= 0:
            raise UsageError(f"{flag}: a learning rate range is searched on a log scale and "
                             "must stay above 0", fix="e.g. 1e-5..1e-3")
        return Range(float(bounds[0]), float(bounds[1]), log, kind is int)
    parts = [part.strip() for part in text.split(",")]
    values = tuple(_value(flag, key, kind, part) for part in parts)
    if len(set(values)) != len(values):
        raise UsageError(f"{flag}: a value is listed twice", fix="list each value once")
    return Choices(values)


def _number(flag: str, kind: type, text: str) -> int | float:
    try:
        value = kind(text.strip()) if kind is int else float(text.strip())
    except ValueError:
        raise UsageError(f"{flag}: {text.strip()!r} is not "
                         f"{'a whole number' if kind is int else 'a number'}", fix=FIX) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{flag}: {text.strip()!r} is not a finite number", fix=FIX)
    return value


def _value(flag: str, key: str, kind: type, text: str) -> Any:
    if not text:
        raise UsageError(f"{flag}: an empty value", fix=FIX)
    if kind is not str:
        return _number(flag, kind, text)
    allowed = choices(key)
    if allowed and text not in allowed:
        raise UsageError(f"{flag}: {text!r} is not one of {', '.join(allowed)}", fix=FIX)
    return text


def grid(space: Space) -> list[dict[str, Any]]:
    """Every combination of the lists, the first flag varying slowest."""
    ranges = [FLAG_NAMES[key] for key, param in space.items() if isinstance(param, Range)]
    if ranges:
        raise UsageError(f"{', '.join(ranges)}: a range cannot be enumerated as a grid",
                         fix="add --trials N to sample N trials with TPE, or list the values")
    keys = list(space)
    axes = [param.values for param in space.values() if isinstance(param, Choices)]
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes)]


def size(space: Space, trials: int | None) -> int:
    """How many trials a sweep runs: --trials N, else every combination of the lists."""
    if trials is not None:
        return trials
    return math.prod(len(param.values) for param in space.values()
                     if isinstance(param, Choices))


def label(params: dict[str, Any]) -> str:
    """A trial's parameters in a few characters: `lr=5e-04 lora_r=16`."""
    short = {"learning_rate": "lr"}
    return " ".join(f"{short.get(key, key)}={_shown(value)}" for key, value in params.items())


def _shown(value: Any) -> str:
    if isinstance(value, float) and value and abs(value) < 1e-2:
        mantissa, _, exponent = f"{value:.2e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"  # 5e-04, 3.7e-04
    return f"{value:g}" if isinstance(value, float) else str(value)
