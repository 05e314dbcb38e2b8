"""Wire parsing, subscriptions, sharing labels, backoff and node.toml edits."""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import PeerSettings, TrustedOwner, load_settings
from crypto.errors import ConfigError, InputError, PeerProtocolError
from crypto.keys import NoteSigner, generate_signing_key
from federation.peers import add_peer, add_trusted_owner, owner_verifiers, remove_peer
from federation.policy import may_receive, offered, parse_subscription, subscribed
from federation.protocol import MAX_ENTRY_LINE_BYTES, EntryParser, encode_entry
from federation.scheduler import JITTER, max_backoff, next_delay
from node.identity.principals import Principal
from node.log.lists import content_delta, fold
from node.store import ListRow

SHA = "ab" * 32


def parse(line: bytes | str, seq: int = 0) -> tuple[object, ...]:
    raw = line.encode() if isinstance(line, str) else line
    return EntryParser(peer="p", next_seq=seq).parse(raw)


# --- entry lines -----------------------------------------------------------------------------


@given(
    seq=st.integers(0, 2**63 - 1),
    op=st.sampled_from(["add", "remove"]),
    category=st.sampled_from(["", "A1", "B2", "baseline", "ÉÑ ü:/+-"]),
    ts=st.integers(0, 2**63 - 1),
)
def test_entry_lines_round_trip(seq: int, op: str, category: str, ts: int) -> None:
    entry = (seq, op, "sha256", SHA, category, ts)
    line = encode_entry(entry)
    assert line.endswith(b"\n")
    assert parse(line[:-1], seq) == entry


def test_opaque_values_with_quotes_round_trip() -> None:
    entry = (0, "add", "photodna", 'a"b\\c{}', "", 1)
    assert parse(encode_entry(entry)[:-1]) == entry


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("not-json", "{"),
        ("array", "[]"),
        ("missing-field", {"seq": 0, "op": "add", "type": "sha256", "value": SHA, "category": ""}),
        ("extra-field", {"x": 1}),
        ("seq-gap", {"seq": 1}),
        ("seq-as-string", {"seq": "0"}),
        ("seq-as-bool", {"seq": False}),
        ("bad-op", {"op": "edit"}),
        ("unknown-type", {"type": "sha512"}),
        ("uppercase-hex", {"value": SHA.upper()}),
        ("short-hex", {"value": SHA[:-2]}),
        ("padded-value", {"value": " " + SHA}),
        ("bad-category", {"category": "a\nb"}),
        ("long-category", {"category": "x" * 65}),
        ("negative-timestamp", {"timestamp_ms": -1}),
        ("float-timestamp", {"timestamp_ms": 1.5}),
        ("huge-line", {"value": "a" * MAX_ENTRY_LINE_BYTES}),
    ],
)
def test_malformed_entry_lines_are_refused(name: str, line: object) -> None:
    if isinstance(line, dict):
        full = {
            "seq": 0,
            "op": "add",
            "type": "sha256",
            "value": SHA,
            "category": "A1",
            "timestamp_ms": 5,
        }
        full.update(line)
        if name == "missing-field":
            full = dict(line)
        line = json.dumps(full)
    with pytest.raises(PeerProtocolError) as exc:
        parse(str(line))
    assert SHA not in str(exc.value)  # never quote a hash value


def test_parser_expects_consecutive_seqs() -> None:
    p = EntryParser(peer="p", next_seq=5)
    p.parse(encode_entry((5, "add", "md5", "0" * 32, "", 1))[:-1])
    with pytest.raises(PeerProtocolError):
        p.parse(encode_entry((5, "add", "md5", "1" * 32, "", 1))[:-1])  # duplicate seq


# --- folding received entries ---------------------------------------------------------------------


@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 6), st.sampled_from("ab")),
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_folding_in_two_batches_equals_folding_the_whole_log(
    ops: list[tuple[str, int, str]], cut: int
) -> None:
    log = [(i, op, "md5", f"{v:032x}", cat, 0) for i, (op, v, cat) in enumerate(ops)]
    first, second = log[:cut], log[cut:]
    content = fold(first)
    adds, removes, changes = content_delta(second, content, list_id=1)
    for key in removes:
        content.pop(key)
    for t, v, c, s in adds:
        content[(t, v)] = (c, s)
    assert content == fold(log)
    # The index sees removals (with the category they were added under) before additions.
    kinds = [c.op for c in changes]
    assert kinds == sorted(kinds, key=lambda k: k == "add")


# --- subscriptions and labels ---------------------------------------------------------------------


def test_subscription_patterns() -> None:
    assert subscribed(["*"], "a", "x")
    assert subscribed(["a/*"], "a", "x")
    assert not subscribed(["a/*"], "b", "x")
    assert subscribed(["b/y", "a/x"], "a", "x")
    assert not subscribed(["a/y"], "a", "x")
    assert not subscribed([], "a", "x")


@pytest.mark.parametrize("bad", ["", "a", "a/", "*/x", "A/x", "a/b/c", "a/**"])
def test_malformed_subscription_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_subscription(bad)


def _row(label: str, frozen: str | None = None, owner: str = "a") -> ListRow:
    return ListRow(1, owner, "x", label, "", True, None, frozen, 0)


def test_labels_decide_what_a_peer_receives() -> None:
    partner = Principal("p", "peer", frozenset({"baseline"}), "cert")
    rows = [_row("baseline"), _row("restricted"), _row("private")]
    assert [r.label for r in offered(partner, rows)] == ["baseline"]


def test_private_never_leaves_even_if_granted() -> None:
    assert not may_receive(Principal("p", "peer", frozenset({"private"}), "cert"), _row("private"))
    assert not may_receive(Principal("self", "admin", None, "self"), _row("private"))


def test_frozen_lists_are_not_offered() -> None:
    peer = Principal("p", "peer", frozenset({"baseline"}), "cert")
    assert not may_receive(peer, _row("baseline", frozen="fork"))


# --- backoff --------------------------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    rnd = random.Random(1)
    delays = [next_delay(10, f, rnd) for f in range(8)]
    assert 10 * (1 - JITTER) <= delays[0] <= 10 * (1 + JITTER)
    for f in range(1, 5):
        assert 10 * 2**f * (1 - JITTER) <= delays[f] <= 10 * 2**f * (1 + JITTER)
    assert delays[7] <= max_backoff(10) * (1 + JITTER)
    assert max_backoff(10) == 160
    assert max_backoff(3600) == 3600


def test_jitter_spreads_pulls() -> None:
    rnd = random.Random(2)
    assert len({round(next_delay(60, 0, rnd), 3) for _ in range(20)}) > 10


# --- node.toml ------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    from node.datadir import init_data_dir

    init_data_dir(tmp_path / "n", node_id="nl-nca")
    return tmp_path / "n"


def test_peer_add_and_remove_round_trip_through_node_toml(data_dir: Path) -> None:
    key = NoteSigner("be-fccu", generate_signing_key()).verifier_key
    before = (data_dir / "node.toml").read_text()
    peer = PeerSettings(
        node_id="be-fccu",
        url="https://fccu.example:8443",
        signing_keys=[key],
        labels=["baseline"],
        subscribe=["be-fccu/*"],
        interval_seconds=30,
    )
    add_peer(data_dir, peer)
    settings = load_settings(data_dir)
    assert settings.peers == [peer]
    assert [v.verifier_key for v in owner_verifiers(settings, "be-fccu")] == [key]
    with pytest.raises(InputError):
        add_peer(data_dir, peer)  # twice
    assert remove_peer(data_dir, "be-fccu")
    assert tomllib.loads((data_dir / "node.toml").read_text()) == tomllib.loads(before)
    assert not remove_peer(data_dir, "be-fccu")


def test_trusted_owner_keys_verify_relayed_lists(data_dir: Path) -> None:
    key = NoteSigner("int-icse", generate_signing_key()).verifier_key
    add_trusted_owner(data_dir, TrustedOwner(node_id="int-icse", signing_keys=[key]))
    settings = load_settings(data_dir)
    assert [v.verifier_key for v in owner_verifiers(settings, "int-icse")] == [key]
    assert owner_verifiers(settings, "someone-else") == []


@pytest.mark.parametrize(
    "change",
    [
        {"url": "http://plain.example"},
        {"fingerprint": "sha256:xyz"},
        {"subscribe": ["nope"]},
        {"signing_keys": ["garbage"]},
        {"signing_keys": [NoteSigner("other-node", generate_signing_key()).verifier_key]},
    ],
)
def test_bad_peer_entries_are_refused_before_writing(
    data_dir: Path, change: dict[str, object]
) -> None:
    before = (data_dir / "node.toml").read_text()
    fields: dict[str, object] = {"node_id": "be-fccu", "url": "https://x.example", **change}
    peer = PeerSettings(**fields)
    with pytest.raises(InputError):
        add_peer(data_dir, peer)
    assert (data_dir / "node.toml").read_text() == before
