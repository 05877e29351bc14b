"""The root updater's trust in keys that came with the enrolment: pinned the first time, never
taken from the gateway's directory again (a gateway taken over later cannot plant one)."""

from __future__ import annotations

from pathlib import Path

from ota import apply, release


def test_enrolment_keys_are_pinned_once(tmp_path: Path) -> None:
    state, work = tmp_path / "state", tmp_path / "work"
    enrolled = state / "identity" / "release-keys"
    enrolled.mkdir(parents=True)
    county = release.keygen(tmp_path / "county.key")
    (enrolled / "county-0.pem").write_text(county.read_text())
    layout = apply.Layout(root=tmp_path / "opt", state=state, work=work, keys=(tmp_path / "no-such-dir",))
    assert apply.run(layout) == 0  # nothing to install; the keys are pinned
    assert [release.public_text(k) for k in layout.trusted()] == [county.read_text().strip()]

    planted = release.keygen(tmp_path / "planted.key")
    (enrolled / "county-0.pem").write_text(planted.read_text())
    assert apply.run(layout) == 0
    assert [release.public_text(k) for k in layout.trusted()] == [county.read_text().strip()], "re-pinned"
