"""Modbus register decoding against words written out by hand (not by pymodbus's own encoder)."""

from __future__ import annotations

import pytest

from flows.store.modbus import Register, decode


@pytest.mark.parametrize(
    "words,register,expected",
    [
        ({1: 0x41AC, 2: 0x0000}, Register(1, "float32"), 21.5),  # 0x41AC0000, high word first
        ({1: 0x0000, 2: 0x41AC}, Register(1, "float32", word_order="little"), 21.5),
        ({5: 0xC2C8, 6: 0x0000}, Register(5, "float32"), -100.0),  # 0xC2C80000
        ({3: 0x00D7}, Register(3, "int16", scale=0.1), 21.5),  # 215 tenths
        ({3: 0xFF38}, Register(3, "int16", scale=0.1), -20.0),  # -200 in two's complement
        ({3: 0xFFFF}, Register(3, "uint16"), 65535.0),
        ({7: 0xFFFE, 8: 0x1DC0}, Register(7, "int32", scale=0.01), -1234.56),  # -123456 = 0xFFFE1DC0
        ({7: 0x1170, 8: 0x0001}, Register(7, "uint32", word_order="little"), 70000.0),  # 0x00011170
    ],
)
def test_register_words_decode_to_the_value(words, register, expected):
    assert decode(words, register) == pytest.approx(expected, abs=1e-9)
