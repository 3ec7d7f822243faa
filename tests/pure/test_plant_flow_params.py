"""PlantFlow sends a flow run's parameters as Prefect's own serializer (FastAPI's jsonable_encoder)
would, without importing FastAPI for the JSON values the flows take."""

from __future__ import annotations

import enum
import math
from datetime import date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from prefect.flows import Flow

from flows.pipelines.params import PlantFlow, checked, flow


class Kind(enum.StrEnum):
    HOURLY = "hourly"


async def _fn(**parameters: object) -> None:
    return None


PLANT = PlantFlow(fn=_fn, name="plant", validate_parameters=False)
PREFECT = Flow(fn=_fn, name="prefect", validate_parameters=False)

keys = st.one_of(st.text(max_size=8), st.sampled_from(["_sa_state", "_sample", "start"]))
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from([date(2024, 1, 31), datetime(2024, 1, 31, 5, 30), Kind.HOURLY]),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def same(a: object, b: object) -> bool:
    """Equal with equal types all the way down (True is not 1, a tuple is not a list), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b  # type: ignore[arg-type]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)  # type: ignore[index]
    return a == b


@settings(max_examples=400, deadline=None)
@given(parameters=st.dictionaries(st.text(max_size=8), values, max_size=5))
def test_parameters_are_sent_as_prefects_own_serializer_sends_them(parameters):
    assert same(PLANT.serialize_parameters(parameters), PREFECT.serialize_parameters(parameters))


def test_the_flows_parameters_are_plain_and_their_types_survive():
    parameters = {"hour": "2024-01-31T05:00", "lookback_hours": 3, "dry_run": False, "outlier_mads": 3.5,
                  "limits": {"temperature": [-40.0, 125.0]}, "value_columns": {"temperature": "t1"}, "source_block": None}
    sent = PLANT.serialize_parameters(parameters)
    assert same(sent, PREFECT.serialize_parameters(parameters)) and same(sent, parameters)


def test_the_flow_decorator_makes_a_plant_flow_with_its_options():
    @flow(name="made-here", timeout_seconds=60, validate_parameters=False)
    @checked
    async def made(n: int = 1) -> int:
        return n

    assert isinstance(made, PlantFlow) and made.name == "made-here" and made.timeout_seconds == 60
