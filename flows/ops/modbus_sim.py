"""A simulated sensor floor: real pymodbus TCP servers on loopback (tests, demo, benchmarks).

Each device is a pymodbus SimDevice whose holding registers hold the encoded values of its
register map, so the poller reads and decodes them exactly as it would a real sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient as _Codec
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from flows.store.modbus import Register

DEVICES_PER_ENDPOINT = 200  # Modbus device ids are one byte


@dataclass
class SimSensor:
    device_id: int
    registers: dict[str, Register]
    values: dict[str, float]


def encode(registers: dict[str, Register], values: dict[str, float], size: int = 16) -> list[int]:
    """The holding registers 0..size-1 of a device holding `values` under `registers`."""
    words = [0] * size
    for measure, reg in registers.items():
        kind = getattr(_Codec.DATATYPE, reg.type.upper())
        raw = values[measure] / reg.scale
        raw = raw if reg.type == "float32" else int(round(raw))
        encoded = _Codec.convert_to_registers(raw, kind, word_order=reg.word_order)
        words[reg.address : reg.address + len(encoded)] = encoded
    return words


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimulatedEndpoint:
    """One Modbus TCP server on 127.0.0.1 with up to 200 devices."""

    def __init__(self, sensors: list[SimSensor], port: int | None = None) -> None:
        self.port = port or free_port()
        devices = [
            SimDevice(id=s.device_id, simdata=[SimData(address=0, values=encode(s.registers, s.values), datatype=DataType.REGISTERS)])
            for s in sensors
        ]
        self.server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        self._task: asyncio.Task | None = None

    async def start(self) -> SimulatedEndpoint:
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(100):  # wait until it accepts connections
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            await asyncio.sleep(0.02)
        raise RuntimeError(f"simulated Modbus server on port {self.port} did not start")

    async def stop(self) -> None:
        await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class SilentEndpoint:
    """A TCP server that accepts connections and never answers: a hung device or gateway."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def start(self) -> SilentEndpoint:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while await reader.read(1024):
                    pass
            writer.close()

        self._server = await asyncio.start_server(swallow, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
