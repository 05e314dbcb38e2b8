"""``hashfed pull --trust``: a verifier key as published names its owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.errors import InputError
from crypto.keys import NoteSigner, generate_signing_key
from federation.feed_pull import load_trust


def _key(name: str) -> str:
    return NoteSigner(name, generate_signing_key()).verifier_key


def test_a_bare_key_is_trusted_for_the_owner_it_names() -> None:
    key = _key("agency-a")
    trust = load_trust([key])
    assert list(trust) == ["agency-a"]
    assert trust["agency-a"][0].verifier_key == key


def test_owner_equals_key_still_works_and_so_does_a_file(tmp_path: Path) -> None:
    a, b, c = _key("agency-a"), _key("be-fccu"), _key("nl-nca")
    (tmp_path / "owners.txt").write_text(f"# owners\n{b}\nnl-nca {c}\n")
    trust = load_trust([f"agency-a={a}"], tmp_path / "owners.txt")
    assert sorted(trust) == ["agency-a", "be-fccu", "nl-nca"]


@pytest.mark.parametrize("bad", ["agency-a", "Agency+1234abcd+AAAA", "x=not-a-key"])
def test_malformed_trust_is_refused(bad: str) -> None:
    with pytest.raises(InputError):
        load_trust([bad])
