"""The window unit's behaviour as the gateway and the citizen see it, driven through `Unit` alone."""

import link
from unit import Unit


class Gateway:
    """The far end of the link, scripted: decodes what the unit sends and answers by hand."""

    def __init__(self) -> None:
        self.decoder = link.Decoder()
        self.seq = 0

    def frames(self, data: bytes) -> list[tuple[int, int, dict]]:
        return self.decoder.feed(data)

    def send(self, ftype: int, payload: dict) -> bytes:
        self.seq += 1
        return link.encode_frame(ftype, self.seq, link.dumps(payload))


def connected(now: int = 0) -> tuple[Unit, Gateway]:
    unit = Unit("u1", "1.0.0", "raspberry_pi_pico", ["good", "bad", "next"], now, seq=10)
    gateway = Gateway()
    [(ftype, seq, hello)] = gateway.frames(unit.poll(now))
    assert ftype == link.HELLO
    assert hello == {
        "proto": 2,
        "uid": "u1",
        "fw": "1.0.0",
        "model": "raspberry_pi_pico",
        "nkeys": 3,
        "keys": ["good", "bad", "next"],
    }
    unit.receive(link.ack(seq), now)
    assert unit.session
    return unit, gateway


def test_presses_go_out_one_at_a_time_in_order() -> None:
    unit, gateway = connected()
    unit.press("good", 100)
    unit.press("next", 120)
    [(ftype, seq, first)] = gateway.frames(unit.poll(130))
    assert (ftype, first) == (link.KEY, {"key": "good", "n": 1, "ms": 100})
    assert gateway.frames(unit.poll(140)) == []  # the second waits for the first's ACK
    unit.receive(link.ack(seq), 150)
    [(_, _, second)] = gateway.frames(unit.poll(150))
    assert second == {"key": "next", "n": 2, "ms": 120}


def test_presses_made_while_the_gateway_is_away_arrive_when_it_returns() -> None:
    unit, gateway = connected()
    now = 0
    unit.press("bad", now)
    sent = []
    while now < 4000:  # nobody answers: retransmissions, then the session ends
        sent += gateway.frames(unit.poll(now))
        now += 50
    assert [f[0] for f in sent].count(link.KEY) == 1 + link.RETRIES
    assert not unit.session
    assert unit.led_state(now) == "error"
    unit.press("good", now)
    hello = [f for f in gateway.frames(unit.poll(now + 2000)) if f[0] == link.HELLO]
    unit.receive(link.ack(hello[0][1]), now + 2000)
    delivered = []
    for step in range(4):
        for _, seq, payload in gateway.frames(unit.poll(now + 2000 + step)):
            delivered.append(payload["key"])
            unit.receive(link.ack(seq), now + 2000 + step)
    assert delivered == ["bad", "good"]
    assert unit.led_state(now + 4000) == "idle"


def test_a_rating_is_thanked_at_once_even_with_no_gateway() -> None:
    unit = Unit("u1", "1.0.0", "raspberry_pi_pico", ["good", "bad"], 0)
    unit.press("good", 10)
    assert unit.led_state(20) == "thanks"
    assert unit.leds(20)[0]  # green lit in the first half of the blink


def test_set_changes_the_led_once_and_every_copy_is_acked() -> None:
    unit, gateway = connected()
    frame = gateway.send(link.SET, {"led": "ready"})
    unit.receive(frame + frame, 10)
    acks = gateway.frames(unit.poll(10))
    assert [f[:2] for f in acks] == [(link.ACK, gateway.seq)] * 2
    assert unit.led_state(10) == "ready"
    assert unit.leds(10) == (True, False, False)


def test_ping_is_answered_with_counters_before_queued_presses() -> None:
    unit, gateway = connected()
    unit.press("next", 5)
    unit.receive(gateway.send(link.PING, {}), 500)
    frames = gateway.frames(unit.poll(500))
    assert frames[0] == (link.ACK, gateway.seq, {})
    (ftype, seq, pong) = frames[1]
    assert (ftype, pong) == (link.PONG, {"up_ms": 500, "n": 1, "dropped": 0})
    unit.receive(link.ack(seq), 510)
    [(ftype, _, key)] = gateway.frames(unit.poll(510))
    assert (ftype, key["key"]) == (link.KEY, "next")


def test_a_full_queue_drops_the_oldest_and_says_so() -> None:
    unit = Unit("u1", "1.0.0", "raspberry_pi_pico", ["good", "bad"], 0, queue_size=4)
    for i in range(6):
        unit.press("good" if i % 2 else "bad", i)
    assert [item[0] for item in unit.queue.pending()] == [3, 4, 5, 6]
    assert unit.queue.dropped == 2
