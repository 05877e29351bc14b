"""The tests' private Mosquitto: a port is never handed out twice, and one taken between the
choice and the start is chosen again."""

from __future__ import annotations

import socket

import pytest

from mqtt import broker
from mqtt.broker import Mosquitto


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    ports = [broker.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_chosen_port_another_process_took_first_is_chosen_again(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        first = iter([taken])
        real = broker.free_port
        monkeypatch.setattr(broker, "free_port", lambda: next(first, None) or real())
        with Mosquitto(tmp_path / "broker") as started:
            assert started.port != taken
            socket.create_connection(("127.0.0.1", started.port), timeout=2).close()


def test_a_port_given_by_the_caller_is_never_changed(tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        with pytest.raises(broker.BrokerError, match="exited"):
            Mosquitto(tmp_path / "broker", port=taken).start()
