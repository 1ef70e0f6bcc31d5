"""Frames written straight to the transport (api/transport/direct.py) are the frames
websockets would write (RFC 6455 5.2), compressed or not."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from tripsage_sync.api.transport.direct import frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_frame_header_is_the_one_websockets_serializes(length: int, opcode: Opcode) -> None:
    data = b"x" * length
    expected = Frame(opcode, data).serialize(mask=False)
    assert frame_header(0x80 | opcode.value, length) + data == expected
