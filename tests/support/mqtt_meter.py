"""A proxy that reads the MQTT packets passing through and counts, per connection, how many
QoS 1 PUBLISHes the client has outstanding (sent, PUBACK not yet back): the figure a broker's
Receive Maximum bounds. Only the framing is parsed (fixed header, topic, packet id)."""

from __future__ import annotations

import socket

from tests.support.proxy import Proxy

PUBLISH, PUBACK = 3, 4


def packets(buffer: bytearray) -> list[tuple[int, int, bytes]]:
    """Whole packets at the front of `buffer` as (type, flags, body); consumed from it."""
    out = []
    while len(buffer) >= 2:
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buffer):
                return out
            byte = buffer[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        if len(buffer) < i + length:
            return out
        out.append((buffer[0] >> 4, buffer[0] & 0x0F, bytes(buffer[i : i + length])))
        del buffer[: i + length]
    return out


class MeteringProxy(Proxy):
    def __init__(self, target_port: int) -> None:
        self._buffers: dict[socket.socket, bytearray] = {}
        self._client_of: dict[socket.socket, socket.socket] = {}
        self._outstanding: dict[socket.socket, set[int]] = {}
        self.most_outstanding = 0
        super().__init__(target_port)

    def _opened(self, client: socket.socket, upstream: socket.socket) -> None:
        for sock in (client, upstream):
            self._buffers[sock] = bytearray()
            self._client_of[sock] = client
        self._outstanding[client] = set()

    def _passing(self, sock: socket.socket, data: bytes) -> None:
        buffer = self._buffers[sock]
        buffer += data
        client = self._client_of[sock]
        outstanding = self._outstanding[client]
        for kind, flags, body in packets(buffer):
            if kind == PUBLISH and sock is client and (flags >> 1) & 3 == 1:
                topic_len = int.from_bytes(body[:2], "big")
                outstanding.add(int.from_bytes(body[2 + topic_len : 4 + topic_len], "big"))
                self.most_outstanding = max(self.most_outstanding, len(outstanding))
            elif kind == PUBACK and sock is not client:
                outstanding.discard(int.from_bytes(body[:2], "big"))
