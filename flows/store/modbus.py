"""Polling Modbus TCP sensors with pymodbus's async client.

A sensor's register map (the `registers` JSON of the sensors table) names, per measure, the
holding register address, the data type, a scale factor and the word order of 32-bit values:

    {"temperature": {"address": 1, "type": "float32", "scale": 1.0, "word_order": "big"},
     "humidity":    {"address": 3, "type": "uint16",  "scale": 0.1}}

Sensors behind one host:port share one connection; endpoints are polled concurrently, and every
request has a bounded timeout, so one dead device costs one timeout, not a stalled cycle.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from flows.store.schema import MEASURES

_WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
MAX_SPAN = 125  # registers per read request (Modbus limit)


@dataclass(frozen=True)
class Register:
    address: int
    type: str = "float32"
    scale: float = 1.0
    word_order: str = "big"

    @property
    def count(self) -> int:
        return _WORDS[self.type]


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    loc_id: str
    host: str
    port: int
    device_id: int
    registers: dict[str, Register] = field(hash=False)


def parse_registers(text: str | None, sensor_id: str) -> dict[str, Register]:
    """The register map of `sensor_id`; a ValueError names the sensor and the bad entry."""
    where = f"sensor {sensor_id!r}: registers"
    try:
        spec = json.loads(text or "")
    except json.JSONDecodeError:
        raise ValueError(f"{where} is not JSON: {text!r}") from None
    if not isinstance(spec, dict) or not spec:
        raise ValueError(f"{where} must map measures to registers, got {text!r}")
    out = {}
    for measure, entry in spec.items():
        if measure not in MEASURES:
            raise ValueError(f"{where}: {measure!r} is not a measure (expected {', '.join(MEASURES)})")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: {measure} must be an object, got {entry!r}")
        kind = str(entry.get("type", "float32")).lower()
        order = str(entry.get("word_order", "big")).lower()
        address, scale = entry.get("address"), entry.get("scale", 1.0)
        if kind not in _WORDS:
            raise ValueError(f"{where}: {measure} type {kind!r} is not one of {', '.join(_WORDS)}")
        if order not in ("big", "little"):
            raise ValueError(f"{where}: {measure} word_order {order!r} is not 'big' or 'little'")
        if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 65535:
            raise ValueError(f"{where}: {measure} address {address!r} is not 0..65535")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
            raise ValueError(f"{where}: {measure} scale {scale!r} is not a number")
        out[measure] = Register(address, kind, float(scale), order)
    return out


def decode(words: dict[int, int], reg: Register) -> float:
    """The value of `reg` from the holding registers `words` (address -> 16-bit word), scaled."""
    raw = [words[a] for a in range(reg.address, reg.address + reg.count)]
    kind = getattr(AsyncModbusTcpClient.DATATYPE, reg.type.upper())
    return float(AsyncModbusTcpClient.convert_from_registers(raw, kind, word_order=reg.word_order)) * reg.scale


@dataclass
class PollResult:
    readings: list[dict[str, object]]  # sensor_id, and a float per measure read
    failures: dict[str, str]  # sensor_id -> reason


class ModbusPoller:
    """Polls a fixed set of sensors; keeps one connection per endpoint across cycles."""

    def __init__(self, sensors: list[Sensor], timeout: float) -> None:
        self.timeout = timeout
        self.endpoints: dict[tuple[str, int], list[Sensor]] = defaultdict(list)
        for sensor in sensors:
            self.endpoints[(sensor.host, sensor.port)].append(sensor)
        self.clients: dict[tuple[str, int], AsyncModbusTcpClient] = {}

    async def poll(self) -> PollResult:
        result = PollResult([], {})
        await asyncio.gather(*(self._poll_endpoint(ep, sensors, result) for ep, sensors in self.endpoints.items()))
        return result

    async def _poll_endpoint(self, endpoint: tuple[str, int], sensors: list[Sensor], result: PollResult) -> None:
        try:
            client = await self._client(endpoint)
        except (TimeoutError, OSError, ModbusException, ConnectionError) as exc:
            for sensor in sensors:
                result.failures[sensor.sensor_id] = f"cannot connect to {endpoint[0]}:{endpoint[1]}: {exc or type(exc).__name__}"
            return
        outcomes = await asyncio.gather(*(self._read(client, s) for s in sensors), return_exceptions=True)
        for sensor, outcome in zip(sensors, outcomes):
            if isinstance(outcome, BaseException):
                reason = "timed out" if isinstance(outcome, asyncio.TimeoutError) else f"{type(outcome).__name__}: {outcome}"
                result.failures[sensor.sensor_id] = f"{endpoint[0]}:{endpoint[1]} device {sensor.device_id}: {reason}"
            else:
                result.readings.append({"sensor_id": sensor.sensor_id, **outcome})
        if not client.connected:
            self.clients.pop(endpoint, None)

    async def _client(self, endpoint: tuple[str, int]) -> AsyncModbusTcpClient:
        client = self.clients.get(endpoint)
        if client is not None and client.connected:
            return client
        client = AsyncModbusTcpClient(endpoint[0], port=endpoint[1], timeout=self.timeout, retries=0, reconnect_delay=0)
        if not await asyncio.wait_for(client.connect(), self.timeout):
            client.close()
            raise ConnectionError("connection refused or unreachable")
        self.clients[endpoint] = client
        return client

    async def _read(self, client: AsyncModbusTcpClient, sensor: Sensor) -> dict[str, float]:
        regs = sensor.registers
        lo = min(r.address for r in regs.values())
        hi = max(r.address + r.count for r in regs.values())
        blocks = [(lo, hi - lo)] if hi - lo <= MAX_SPAN else [(r.address, r.count) for r in regs.values()]
        words: dict[int, int] = {}
        for address, count in blocks:
            response = await asyncio.wait_for(
                client.read_holding_registers(address, count=count, device_id=sensor.device_id), self.timeout
            )
            if response.isError():
                code = getattr(response, "exception_code", "?")
                raise ModbusException(f"exception response, code {code}, reading {count} registers at {address}")
            words.update(zip(range(address, address + count), response.registers))
        return {measure: decode(words, reg) for measure, reg in regs.items()}

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
