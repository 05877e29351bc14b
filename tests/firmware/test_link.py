"""Properties of the link protocol that hold for any input: fuzzed with hypothesis."""

import json

import link
from hypothesis import assume, given, settings
from hypothesis import strategies as st

payloads = st.dictionaries(st.text(max_size=8), st.one_of(st.integers(0, 2**29 - 1), st.text(max_size=12)), max_size=4)


@settings(max_examples=400)
@given(st.lists(st.binary(max_size=700), max_size=12))
def test_no_input_crashes_the_decoder_or_grows_its_buffer(chunks: list[bytes]) -> None:
    decoder = link.Decoder()
    for chunk in chunks:
        for ftype, seq, payload in decoder.feed(chunk):
            assert ftype in link.NAMES
            assert 0 <= seq <= 255
            assert isinstance(payload, dict)
        assert decoder.buffered() <= link.MAX_ENCODED


@given(
    st.sampled_from(sorted(link.NAMES)),
    st.integers(0, 255),
    payloads,
    st.binary(max_size=300),
    st.integers(1, 40),
)
def test_a_frame_survives_noise_before_it_and_any_split(
    ftype: int, seq: int, payload: dict, noise: bytes, split: int
) -> None:
    """Whatever garbage preceded it, the first frame after a 0x00 arrives intact, however it is chopped."""
    body = json.dumps(payload, separators=(",", ":")).encode() if payload else b""
    assume(len(body) <= link.MAX_PAYLOAD)
    stream = noise + b"\x00" + link.encode_frame(ftype, seq, body)
    decoder = link.Decoder()
    frames = []
    for at in range(0, len(stream), split):
        frames += decoder.feed(stream[at : at + split])
    assert frames[-1] == (ftype, seq, payload)


@given(st.binary(max_size=1000))
def test_cobs_round_trips_without_zero_bytes(data: bytes) -> None:
    encoded = link.cobs_encode(data)
    assert 0 not in encoded
    assert link.cobs_decode(encoded) == data


@given(st.integers(0, 2**29 - 1), st.integers(-(2**27), 2**27))
def test_tick_differences_survive_the_wrap(start: int, elapsed: int) -> None:
    later = (start + elapsed) % link.WIRE_PERIOD
    assert link.ticks_diff(later, start) == elapsed


def test_a_corrupted_byte_is_counted_not_delivered() -> None:
    frame = bytearray(link.encode_frame(link.KEY, 5, b'{"key":"good","n":1,"ms":0}'))
    frame[6] ^= 0x40
    decoder = link.Decoder()
    assert decoder.feed(bytes(frame)) == []
    assert decoder.dropped() == 1


def test_oversized_payload_is_refused_at_the_sender() -> None:
    try:
        link.dumps({"x": "y" * link.MAX_PAYLOAD})
    except link.FrameError as exc:
        assert exc.args[0] == "size"
    else:
        raise AssertionError("a payload too big for a frame was encoded")


key_names = st.from_regex(r"[a-z0-9-]{1,20}(:[A-Za-z0-9-]{1,11})?", fullmatch=True)


@settings(max_examples=200)
@given(st.lists(key_names, max_size=link.MAX_KEYS), st.text("0123456789abcdef", min_size=4, max_size=64))
def test_any_key_list_is_announced_whole_in_frames_that_fit(keys: list[str], uid: str) -> None:
    """HELLO then KEYS frames: each under the payload limit, `at` continuing the list, all keys once."""
    payloads = link.announce(uid, "2.0.0", "raspberry_pi_pico2", keys)
    hello = json.loads(payloads[0])
    assert hello["nkeys"] == len(keys)
    got = list(hello["keys"])
    for payload in payloads[1:]:
        doc = json.loads(payload)
        assert doc["at"] == len(got) and doc["keys"]
        got += doc["keys"]
    assert got == keys
    assert all(len(p) <= link.MAX_PAYLOAD for p in payloads)


@given(st.text(max_size=40))
def test_a_key_name_is_well_formed_or_refused(name: str) -> None:
    if link.is_key(name):
        head = name.partition(":")[0]
        assert len(name) <= link.MAX_KEY_LEN and head and all(c.isascii() and (c.isalnum() or c in "-:") for c in name)
        assert head == head.lower()
    assert not link.is_builtin(name) or link.is_key(name)
