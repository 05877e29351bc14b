"""The whole path with real parts: window-unit firmware on a pty, the gateway process with its
station logic, a real broker, and the county. A citizen takes a ticket on the unit, the clerk
calls it, the citizen rates; the county sees a rating tied to that ticket and window."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import GatewayProcess, message_doc, station_config, wait_until
from tests.peripherals.window_unit.rig import Line, Unit, one_unit_station


def test_a_rating_on_the_unit_reaches_the_county_tied_to_its_ticket(tmp_path: Path, broker, subscriber) -> None:
    line = Line(tmp_path, "unit-w1")
    unit = Unit(line.unit_fd, "e6614103e7", layout="2", ticket="ticket:A")
    gw = GatewayProcess(station_config(tmp_path, broker.port, extra=one_unit_station(line.path))).start()

    def events() -> list[dict]:
        seen: dict[int, dict] = {}
        for msg in subscriber.messages():
            doc = message_doc(msg)
            seen.setdefault(doc["seq"], doc)
        return [seen[s] for s in sorted(seen)]

    def kinds(kind: str) -> list[dict]:
        return [e["data"] for e in events() if e["kind"] == kind]

    try:
        wait_until(lambda: any(u["state"] == "online" for u in kinds("unit")), 20, "the unit online")
        unit.press("ticket:A")
        wait_until(lambda: any(q["action"] == "issue" for q in kinds("queue")), 15, "the ticket")
        unit.press("next")
        wait_until(lambda: any(q["action"] == "call" for q in kinds("queue")), 15, "the call")
        unit.press("good")
        wait_until(lambda: kinds("rating"), 15, "the rating")
        assert gw.stop() == 0
    finally:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.kill()
        unit.shutdown()
        line.close()
    rating = kinds("rating")[0]
    assert rating["verdict"] == "good" and rating["window"] == 1 and rating["linked"] is True
    assert rating["ticket"] == "A001" and rating["item"]["code"] == "SB-001"
    assert unit.unacked == 0, "every press the unit made was acknowledged"
    assert not kinds("key"), "with station logic, presses become queue and rating events, not raw keys"
