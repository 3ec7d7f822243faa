"""The flows' parameters: their types, and one check of them all (`checked`).

Every flow is `@flow(validate_parameters=False)` (this module's: a PlantFlow) over `@checked`: the flow's own signature is
validated by pydantic here, in the flow run, whether it was called from Python, started with
`prefect deployment run --param` or from the UI, and a bad value gives one line:
`dry_run='yes' is not true or false`, the shape of every check. (Prefect's own validation would give a
multi-line ParameterTypeError before the flow starts, in another shape than the flows' own checks.)
The types refuse what pydantic would coerce: a number as Unix seconds (`start=20240131` became
1970-08-23), `True` as 1, 'yes' as true. The JSON schema the UI shows is unchanged.
"""

from __future__ import annotations

import functools
import gc
import inspect
import typing
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from prefect.flows import Flow
from pydantic import BeforeValidator, TypeAdapter, ValidationError

from flows.domain.windows import FORMS, parse_hour
from flows.errors import ParameterError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_PLAIN = (str, int, float, bool, type(None))
_NOT_PLAIN = object()


class PlantFlow(Flow):
    """A Prefect flow whose runs send their parameters to the server without importing FastAPI.

    Prefect's Flow.serialize_parameters imports FastAPI for its jsonable_encoder when a flow is
    called (0.16-0.3 s of every flow process that is not a deployment run: a flow called from
    Python, the benchmarks' fresh processes). The flows' parameters are JSON values already
    (text, numbers, booleans, lists and mappings of them): those are sent as jsonable_encoder
    would send them, anything else (a date, an enum, a model) goes through Prefect's own."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        plain = {key: _plain_json(value) for key, value in parameters.items()}
        if any(value is _NOT_PLAIN for value in plain.values()):
            return super().serialize_parameters(parameters)
        return plain


def _plain_json(value: Any) -> Any:
    """`value` as jsonable_encoder returns it when it is made of JSON types only (exact types: a
    str enum is not plain), else _NOT_PLAIN. Tuples become lists; a mapping key starting with
    "_sa", which jsonable_encoder drops, makes the value not plain."""
    if type(value) in _PLAIN:
        return value
    if type(value) in (list, tuple):
        items = [_plain_json(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if type(value) is dict:
        if not all(type(k) is str and not k.startswith("_sa") for k in value):
            return _NOT_PLAIN
        items = {k: _plain_json(v) for k, v in value.items()}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    return _NOT_PLAIN


def flow(**options: Any) -> Callable[[Callable[..., Any]], PlantFlow]:
    """prefect.flow(**options), making a PlantFlow."""
    return lambda fn: PlantFlow(fn=fn, **options)


def _no_number(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"is a number, not {FORMS}")
    return value


def _hour(value: Any) -> Any:
    return parse_hour(_no_number(value))


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("is not a whole number")
    return value


def _flag(value: Any) -> Any:
    """Only true or false (a JSON boolean, or its text from `--param name=false`): pydantic would
    also take 'yes', 'on', 1 and 'y' as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("is not true or false")


TimeBound = Annotated[date | datetime | str, BeforeValidator(_no_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Hour = Annotated[datetime | None, BeforeValidator(_hour)]
Whole = Annotated[int, BeforeValidator(_whole)]


def _reason(name: str, value: Any, error: ValidationError) -> str:
    """The first problem of `error` as `name=value <what is wrong, and what is accepted>`."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if message.startswith(f"{name}="):  # a check that names its parameter itself (windows.parse_hour)
        return message
    if first["type"] != "value_error":  # pydantic's words: "Input should be a valid integer"
        message = ": " + message[0].lower() + message[1:]
    else:
        message = " " + message
    return f"{name}={value!r}{message}"


def _freeze_imports() -> None:
    """Once per process: what exists at the first flow call (modules, classes, Prefect's engine) is
    moved out of the garbage collector's sight (gc.freeze): full collections during runs then walk
    only what runs make (flows/pipelines/__init__.py). A process with frozen objects is not
    frozen again."""
    if not gc.get_freeze_count():
        gc.freeze()


def checked(fn: F) -> F:
    """`fn` with its parameters validated against its own type hints first; a bad value raises
    ParameterError in one line that names the parameter, the value and what it takes, the shape
    of the flows' own checks (`start='2024-13-01' is not a date ...`)."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    adapters = {name: TypeAdapter(hints.get(name, Any)) for name in signature.parameters}

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _freeze_imports()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterError(str(exc)) from None
        for name, value in list(bound.arguments.items()):
            try:
                bound.arguments[name] = adapters[name].validate_python(value)
            except ValidationError as exc:
                raise ParameterError(_reason(name, value, exc)) from None
        return await fn(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]
