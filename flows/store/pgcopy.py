"""PostgreSQL's binary COPY format, encoded from a Polars frame column by column (NumPy, Arrow).

asyncpg's copy_records_to_table needs a Python tuple per row and encodes each value in the event
loop (measured here: about 1 s of CPU for 1M raw readings, holding the GIL); this builds the same
bytes from the columns' buffers in a fraction of that, mostly in Arrow's C++ kernels, which
release the GIL. A column of a type without an encoder here makes `encode` return None: callers
then fall back to copy_records_to_table.

Format (PostgreSQL docs, COPY, "Binary Format"): a header; per row an int16 field count, then
per field an int32 length (-1 for NULL) and the value in network byte order; an int16 -1 ends it.
Each field is built as an Arrow binary column (length prefix + value, or the NULL marker), the
columns are joined row by row, and the joined column's data buffer is the body.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Boolean, Column, DateTime, Float, Integer, String, Table
from sqlalchemy.types import BigInteger, SmallInteger

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # signature, flags, extension
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's timestamp zero, in microseconds since 1970
_NULL = pa.scalar(b"\xff\xff\xff\xff", pa.large_binary())
_EMPTY = pa.scalar(b"", pa.large_binary())  # the separator of binary_join_element_wise: none


def _fixed(dtype: str, prepare: Callable[[pl.Series], np.ndarray]) -> Callable[[pl.Series], pa.Array]:
    """Encoder of a fixed-width type: each value as (int32 width, value), big-endian."""
    width = np.dtype(dtype).itemsize
    record = np.dtype([("length", ">i4"), ("value", dtype)])  # packed: 4 + width bytes

    def encode(series: pl.Series) -> pa.Array:
        fields = np.empty(len(series), dtype=record)
        fields["length"] = width
        fields["value"] = prepare(series)  # NULLs arrive as 0 and are replaced by the marker below
        arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 + width), len(series), [None, pa.py_buffer(fields)])
        return _with_nulls(arr.cast(pa.large_binary()), series)

    return encode


def _text(series: pl.Series) -> pa.Array:
    """Encoder of text: (int32 byte length, UTF-8 bytes)."""
    values = series.cast(pl.String).to_arrow(compat_level=pl.CompatLevel.oldest()).cast(pa.large_binary())
    lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False).astype(">i4")
    prefix = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(series), [None, pa.py_buffer(lengths)])
    return _with_nulls(pc.binary_join_element_wise(prefix.cast(pa.large_binary()), values, _EMPTY), series)


def _with_nulls(fields: pa.Array, series: pl.Series) -> pa.Array:
    if not series.null_count():
        return fields
    return pc.if_else(pa.array(series.is_not_null().to_numpy()), fields, _NULL)


def _timestamps(series: pl.Series) -> np.ndarray:
    return series.cast(pl.Datetime("us")).to_physical().fill_null(0).to_numpy() - PG_EPOCH_US


def _as(dtype: pl.DataType) -> Callable[[pl.Series], np.ndarray]:
    return lambda s: s.cast(dtype).fill_null(0).to_numpy()


def _encoder(column: Column) -> Callable[[pl.Series], pa.Array] | None:
    kind = column.type
    if isinstance(kind, String):
        return _text
    if isinstance(kind, DateTime) and not kind.timezone:
        return _fixed(">i8", _timestamps)
    if isinstance(kind, Float):  # Double: float8 (no REAL/float4 column here)
        return _fixed(">f8", _as(pl.Float64))
    if isinstance(kind, BigInteger):
        return _fixed(">i8", _as(pl.Int64))
    if isinstance(kind, SmallInteger):
        return _fixed(">i2", _as(pl.Int16))
    if isinstance(kind, Integer):
        return _fixed(">i4", _as(pl.Int32))
    if isinstance(kind, Boolean):
        return _fixed("u1", _as(pl.UInt8))
    return None


Encoder = Callable[[pl.Series], pa.Array]


def encoders(table: Table, columns: list[str]) -> list[Encoder] | None:
    """The encoders of `columns` (named as `table`'s), or None when a column's type has none here."""
    found = [_encoder(table.c[name]) for name in columns]
    if not found or any(e is None for e in found):
        return None
    return found  # type: ignore[return-value]


def encode_rows(encoders: list[Encoder], df: pl.DataFrame) -> memoryview:
    """The rows of `df` in binary COPY format, without the header and trailer (encode, or a COPY
    sent in pieces: HEADER, encode_rows of each slice, TRAILER)."""
    if df.is_empty():
        return memoryview(b"")
    count = pa.scalar(np.array([df.width], dtype=">i2").tobytes(), pa.large_binary())
    fields = [encode(series) for series, encode in zip(df.get_columns(), encoders)]
    rows = pc.binary_join_element_wise(count, *fields, _EMPTY)
    _, offsets, data = rows.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[[rows.offset, rows.offset + len(rows)]]
    return memoryview(data)[int(bounds[0]) : int(bounds[1])]


def encode(table: Table, df: pl.DataFrame) -> memoryview | None:
    """`df` (its columns named as `table`'s) in binary COPY format, or None when a column's type
    has no encoder here. Text goes as UTF-8 (asyncpg's client_encoding). A memoryview, because
    asyncpg's copy_to_table takes plain bytes for a file path."""
    found = encoders(table, df.columns)
    if found is None:
        return None
    return memoryview(b"".join((HEADER, encode_rows(found, df), TRAILER)))
