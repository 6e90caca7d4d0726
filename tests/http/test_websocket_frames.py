"""The frames a live view's shared text is sent in (``wire_frame``) are the
frames wsproto writes for the same text, at every length encoding, and a
first view's encoding is framed as it is, not encoded again."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from trioscope.domain.live import shared
from trioscope.http._websocket_stream import text_frame_header, wire_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_shared_frame_is_framed_as_wsproto_frames_it(length: int) -> None:
    text = ("é" + "x" * length)[:length] if length else ""
    frame = shared(text.encode())
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
    assert wire_frame(frame) == expected
    assert frame.nbytes == len(text.encode())


def test_the_header_of_a_frame_over_64_kib_has_a_64_bit_length() -> None:
    assert text_frame_header(2**32 + 5) == bytes((0x81, 127)) + (2**32 + 5).to_bytes(8, "big")


def test_a_frame_is_framed_once_and_its_encoding_is_not_kept() -> None:
    data = b'{"type":"diff","payload":{}}'
    frame = shared(data)
    wire = wire_frame(frame)
    assert frame.encoded is None and wire_frame(frame) is wire
    assert wire.endswith(data)
