"""The frames a live view's shared text is sent in (``wire_frame``, and a
large first view's ``PreFramed``) are the frames wsproto writes for the same
text, at every length encoding, and a first view's encoding is framed as it
is, not encoded again."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from trioscope.domain.live import PreFramed, shared, text_frame_header
from trioscope.http._websocket_stream import wire_frame


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_shared_frame_is_framed_as_wsproto_frames_it(length: int) -> None:
    text = ("é" + "x" * length)[:length] if length else ""
    frame = shared(text.encode())
    expected = bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
    assert wire_frame(frame) == expected
    assert frame.nbytes == len(text.encode())


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_first_view_framed_from_its_pieces_is_framed_as_wsproto_frames_it(length: int) -> None:
    text = ("é" + "x" * length)[:length] if length else ""
    data = text.encode()
    pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    frame = PreFramed(pieces)
    assert frame.wire == bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
    assert (str(frame), len(frame), frame.nbytes) == (text, len(data), len(data))


def test_the_header_of_a_frame_over_64_kib_has_a_64_bit_length() -> None:
    assert text_frame_header(2**32 + 5) == bytes((0x81, 127)) + (2**32 + 5).to_bytes(8, "big")


def test_a_frame_is_framed_once_and_its_encoding_is_not_kept() -> None:
    data = b'{"type":"diff","payload":{}}'
    frame = shared(data)
    wire = wire_frame(frame)
    assert frame.encoded is None and wire_frame(frame) is wire
    assert wire.endswith(data)
