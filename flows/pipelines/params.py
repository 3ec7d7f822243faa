"""Parameter types of the flows: what Prefect's validation may turn into a date, and must not.

Prefect validates a run's parameters with pydantic before the flow starts, and pydantic reads a
number as Unix seconds (`start=20240131` became 1970-08-23) and `True` as 1. These types refuse
such values by name before any coercion; the flows then parse the accepted forms themselves
(flows.domain.windows). The JSON schema the UI shows is unchanged.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

from flows.domain.windows import FORMS, parse_hour


def _no_number(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"{value!r} is a number, not {FORMS}")
    return value


def _hour(value: Any) -> Any:
    return parse_hour(_no_number(value))


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _flag(value: Any) -> Any:
    """Only true or false (a JSON boolean, or its text from `--param name=false`): pydantic would
    also take 'yes', 'on', 1 and 'y' as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{value!r} is not true or false")


TimeBound = Annotated[date | datetime | str, BeforeValidator(_no_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Hour = Annotated[datetime | None, BeforeValidator(_hour)]
Whole = Annotated[int, BeforeValidator(_whole)]
