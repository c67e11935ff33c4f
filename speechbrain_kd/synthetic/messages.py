"""Length-prefixed messages over a pipe: a code and a byte payload.

The format of the answers of a synthesis fork (``EspeakEngine``) and of the
requests and answers of the synthesis server (``SynthesisServer``).
"""

import struct


def send_message(stream, code, payload):
    stream.write(struct.pack("<iq", code, len(payload)) + payload)
    stream.flush()


def receive_message(stream):
    """Reads one ``send_message`` message; ``(None, b"")`` at end of stream."""
    header = stream.read(12)
    if len(header) < 12:
        return None, b""
    code, size = struct.unpack("<iq", header)
    payload = stream.read(size)
    if len(payload) != size:
        return None, b""
    return code, payload
