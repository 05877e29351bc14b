"""Checks firmware/link.py (framing, key names, announcing keys), cardreader.py, debounce.py and
pressqueue.py against tests/firmware/vectors.json.

Written in the MicroPython subset: pytest imports it under CPython, and runs it as a script under
the MicroPython unix port (`micropython check_vectors.py FIRMWARE_DIR VECTORS`), which prints
one line per failure and then `checked N`.
"""

import json
import sys


def _hex(text):
    return bytes.fromhex(text)


def _check_link(link, vectors, fail):
    for case in vectors["crc"]:
        got = link.crc16(_hex(case["data"]))
        if got != case["crc"]:
            fail("crc16(" + case["data"] + ") = " + hex(got))
    for case in vectors["cobs"]:
        data, encoded = _hex(case["data"]), _hex(case["encoded"])
        if link.cobs_encode(data) != encoded:
            fail("cobs_encode(" + case["data"] + ")")
        if link.cobs_decode(encoded) != data:
            fail("cobs_decode(" + case["encoded"] + ")")
    for case in vectors["frames"]:
        wire = _hex(case["wire"])
        if link.encode_frame(case["type"], case["seq"], _hex(case["payload"])) != wire:
            fail("encode_frame " + case["wire"])
        ftype, seq, payload = link.Decoder().feed(wire)[0]
        want = json.loads(_hex(case["payload"]).decode()) if case["payload"] else {}
        if (ftype, seq, payload) != (case["type"], case["seq"], want):
            fail("decode " + case["wire"])
    decoder = link.Decoder()
    for case in vectors["stream"]:
        before = dict(decoder.errors)
        frames = [list(frame) for frame in decoder.feed(_hex(case["bytes"]))]
        if frames != case["frames"]:
            fail("stream " + case["bytes"][:40] + " gave " + repr(frames))
        for name in link.ERRORS:
            if decoder.errors[name] - before[name] != case["errors"].get(name, 0):
                fail("stream " + case["bytes"][:40] + " error count " + name)
        if decoder.buffered():
            fail("stream " + case["bytes"][:40] + " left bytes buffered")
    plan = vectors["retransmit"]
    sender = link.Link()
    sender.send(link.KEY, b"{}", plan["sent_at"])
    names = {link.IDLE: "idle", link.RESEND: "resend", link.GIVE_UP: "give_up"}
    for now, want in plan["expect"]:
        got = names[sender.due(now)]
        if got == "resend":
            sender.resend(now)
        if got != want:
            fail("retransmit at " + str(now) + ": " + got)


def _check_keys(link, vectors, fail):
    cases = vectors["keys"]
    checks = (("valid", link.is_key, True), ("invalid", link.is_key, False))
    checks += (("builtin", link.is_builtin, True), ("not_builtin", link.is_builtin, False))
    for group, check, want in checks:
        for name in cases[group]:
            if bool(check(name)) != want:
                fail(group + " key " + repr(name) + " judged " + str(not want))
    for case in vectors["announce"]:
        # Compared as JSON objects: the byte order of keys in a dict is the port's own business.
        got = link.announce(case["uid"], case["fw"], case["model"], case["keys"])
        want = [json.loads(p) for p in case["payloads"]]
        if [json.loads(p) for p in got] != want:
            fail("announce " + case["about"] + ": " + repr(got))
        for payload in got:
            if len(payload) > link.MAX_PAYLOAD:
                fail("announce " + case["about"] + ": a payload of " + str(len(payload)) + " bytes")


def _check_cards(cardreader, vectors, fail):
    for case in vectors["cards"]:
        reader = cardreader.Rdm6300()
        got = [reader.feed(_hex(data), now) for now, data in case["steps"]]
        if got != case["cards"] or reader.errors != case["errors"]:
            fail("cards " + case["about"] + ": " + repr(got) + " errors " + str(reader.errors))


def _check_debounce(debounce, vectors, fail):
    for case in vectors["debounce"]:
        keyed = debounce.Debouncer(case["stable_ms"])
        presses = [now for now, raw in case["samples"] if keyed.update(bool(raw), now)]
        if presses != case["presses"]:
            fail("debounce " + case["about"] + ": " + repr(presses))


def _check_queue(pressqueue, vectors, fail):
    for case in vectors["queue"]:
        queue = pressqueue.PressQueue(case["size"])
        for op in case["ops"]:
            if op[0] == "add":
                queue.add(op[1], 0)
            else:
                getattr(queue, op[0])()
        pending = [[item[0], item[1]] for item in queue.pending()]
        if pending != case["pending"] or queue.dropped != case["dropped"] or queue.count != case["count"]:
            fail("queue " + case["about"] + ": " + repr(pending) + " dropped " + str(queue.dropped))


def check(vectors):
    """Every failure as a line of text; an empty list when all vectors pass."""
    import cardreader
    import debounce
    import link
    import pressqueue

    failures = []
    _check_link(link, vectors, failures.append)
    _check_keys(link, vectors, failures.append)
    _check_cards(cardreader, vectors, failures.append)
    _check_debounce(debounce, vectors, failures.append)
    _check_queue(pressqueue, vectors, failures.append)
    return failures


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    with open(sys.argv[2]) as f:
        loaded = json.load(f)
    for line in check(loaded):
        print("FAIL", line)
    print("checked", sys.implementation.name)
