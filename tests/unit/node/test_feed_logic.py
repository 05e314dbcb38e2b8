"""Feeds (node/feeds/feed.py) and their STIX 2.1 form (node/feeds/stix.py), on each backend.

Cursor tests are named after what they stop: a tampered cursor, one from
another node or feed, one that no longer fits the feed. STIX objects are
checked with the OASIS validator.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from stix2validator import ValidationOptions, validate_instance

from crypto.checkpoint import list_origin, verify_checkpoint
from crypto.errors import ConfigError
from crypto.merkle import CompactRange, leaf_hash
from node.feeds.cursor import Cursor, Position, decode_cursor, encode_cursor, load_feed_secret
from node.feeds.errors import CursorError, ResyncRequiredError, UnknownFeedError
from node.feeds.feed import FeedList, Feeds
from node.feeds.stix import (
    Page,
    Taxii,
    Timelines,
    VersionFilter,
    collection_id,
    format_date_added,
    indicator_id,
    parse_timestamp,
    stix_pattern,
)
from node.feeds.stix_objects import TLP_MARKINGS, identity_id
from node.log.entry import encode_leaf
from node.node import Node

NodeFactory = Callable[..., Node]
SECRET = bytes(range(32))
A, B = "au-argos/base", "au-argos/extra"


def sha(i: int, salt: str = "") -> str:
    return hashlib.sha256(f"feed test {salt}{i}".encode()).hexdigest()


@pytest.fixture
def node(node_factory: NodeFactory) -> Node:
    return node_factory("au-argos")


@pytest.fixture
def feeds(node: Node) -> Feeds:
    return Feeds(node.store, node_id=node.node_id, secret=SECRET)


def make_list(node: Node, name: str, values: list[str], *, label: str = "baseline") -> None:
    node.create_list(name, label=label, actor="test")
    add(node, name, values)


def add(node: Node, name: str, values: list[str], *, publish: bool = True) -> None:
    node.add(name, [("sha256", v, "A1") for v in values], actor="test")
    if publish:
        node.publish(name, actor="test")


def remove(node: Node, name: str, values: list[str], *, publish: bool = True) -> None:
    node.remove(name, [("sha256", v) for v in values], actor="test")
    if publish:
        node.publish(name, actor="test")


def feed(node: Node, feeds: Feeds, label: str = "baseline") -> list[FeedList]:
    return feeds.lists(label, node.store.all_lists())


def ndjson(feeds: Feeds, plan: list[tuple[FeedList, int]]) -> list[dict[str, object]]:
    return [json.loads(line) for chunk in feeds.ndjson(plan, "c") for line in chunk.splitlines()]


# --- cursors ------------------------------------------------------------------------------------


def cursor_of(
    sizes: dict[str, tuple[int, bytes]],
    *,
    node_id: str = "au-argos",
    label: str = "baseline",
    secret: bytes = SECRET,
) -> str:
    positions = {k: Position(s, r[:8]) for k, (s, r) in sizes.items()}
    return encode_cursor(secret, Cursor(node_id, label, 1, positions))


def test_cursor_round_trip() -> None:
    token = cursor_of({A: (5, b"\x01" * 32)})
    got = decode_cursor(SECRET, token, node_id="au-argos", label="baseline")
    assert got.positions == {A: Position(5, b"\x01" * 8)}


@pytest.mark.parametrize("part", [1, 2])
def test_tampered_cursor_refused(part: int) -> None:
    token = cursor_of({A: (5, b"\x01" * 32)})
    pieces = token.split(".")
    s = pieces[part]
    pieces[part] = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    with pytest.raises(CursorError):
        decode_cursor(SECRET, ".".join(pieces), node_id="au-argos", label="baseline")


def test_cursor_with_raised_position_refused() -> None:
    # The attack a partner could try: edit the payload to skip ahead, keep the tag.
    import base64

    token = cursor_of({A: (5, b"\x01" * 32)})
    prefix, payload, tag = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "==").replace(b"[5,", b"[9,")
    forged = f"{prefix}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{tag}"
    with pytest.raises(CursorError):
        decode_cursor(SECRET, forged, node_id="au-argos", label="baseline")


def test_cursor_of_another_node_refused() -> None:
    theirs = cursor_of({A: (5, b"\x01" * 32)}, node_id="be-fccu", secret=b"x" * 32)
    with pytest.raises(CursorError):
        decode_cursor(SECRET, theirs, node_id="au-argos", label="baseline")
    # Same node id, another secret (a node re-initialised, or a forged node id).
    other = cursor_of({A: (5, b"\x01" * 32)}, secret=b"x" * 32)
    with pytest.raises(CursorError):
        decode_cursor(SECRET, other, node_id="au-argos", label="baseline")


def test_cursor_of_another_feed_refused() -> None:
    token = cursor_of({A: (5, b"\x01" * 32)}, label="restricted")
    with pytest.raises(CursorError):
        decode_cursor(SECRET, token, node_id="au-argos", label="baseline")


@pytest.mark.parametrize(
    "token",
    ["", "hf1", "hf1.a.b", "hf2.e30.AAAA", "hf1.!!!.AAAA", "hf1.W10.AAAA", "x" * 20_000],
    ids=["empty", "prefix-only", "not-json", "other-version", "not-base64", "not-object", "huge"],
)
def test_malformed_cursor_refused(token: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(SECRET, token, node_id="au-argos", label="baseline")


def test_feed_secret_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "feed.secret"
    first = load_feed_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_feed_secret(path) == first
    assert len(first) == 32


def test_malformed_feed_secret_refused(tmp_path: Path) -> None:
    path = tmp_path / "feed.secret"
    path.write_text("not hex\n")
    with pytest.raises(ConfigError):
        load_feed_secret(path)


# --- what a feed serves ---------------------------------------------------------------------------


def test_unknown_and_uncleared_feed_look_alike(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    with pytest.raises(UnknownFeedError):
        feeds.lists("restricted", node.store.all_lists())
    with pytest.raises(UnknownFeedError):
        feeds.lists("baseline", [])  # the caller is cleared for nothing
    with pytest.raises(UnknownFeedError):
        feeds.lists("../etc", node.store.all_lists())


def test_unpublished_list_is_not_in_the_feed(node: Node, feeds: Feeds) -> None:
    node.create_list(A, label="baseline", actor="test")
    add(node, A, [sha(1)], publish=False)
    with pytest.raises(UnknownFeedError):
        feed(node, feeds)


def test_entries_never_go_beyond_the_signed_size(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(10)])
    add(node, A, [sha(i) for i in range(10, 15)], publish=False)
    fls = feed(node, feeds)
    lines = ndjson(feeds, feeds.plan("baseline", fls, None))
    entries = [x for x in lines if "seq" in x]
    assert [e["seq"] for e in entries] == list(range(10))
    assert lines[0]["size"] == 10
    assert lines[-1] == {"cursor": "c"}


def test_ndjson_entries_hash_to_the_signed_root(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(40)])
    remove(node, A, [sha(3), sha(7)])
    fls = feed(node, feeds)
    lines = ndjson(feeds, feeds.plan("baseline", fls, None))
    header = lines[0]
    cp = verify_checkpoint(
        str(header["checkpoint"]),
        origin=list_origin("au-argos", "base"),
        verifiers=node.checkpoint_signer.verifiers(),
    )
    cr = CompactRange()
    cr.extend(
        leaf_hash(
            encode_leaf(
                e["seq"],
                e["op"],
                e["type"],
                e["value"],
                e["category"],  # type: ignore[arg-type]
                e["timestamp_ms"],
            )
        )
        for e in lines[1:-1]
    )
    assert (cr.size, cr.root()) == (cp.size, cp.root_hash) == (42, cp.root_hash)


def test_incremental_starts_at_the_cursor(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(10)])
    cursor = feeds.cursor_for("baseline", feed(node, feeds))
    add(node, A, [sha(i) for i in range(10, 13)])
    remove(node, A, [sha(0)])
    fls = feed(node, feeds)
    plan = feeds.plan("baseline", fls, cursor)
    assert [(fl.name, start) for fl, start in plan] == [(A, 10)]
    got = [(e["seq"], e["op"]) for e in ndjson(feeds, plan) if "seq" in e]
    assert got == [(10, "add"), (11, "add"), (12, "add"), (13, "remove")]


def test_list_new_to_the_feed_starts_at_zero(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(4)])
    cursor = feeds.cursor_for("baseline", feed(node, feeds))
    make_list(node, B, [sha(i, "b") for i in range(2)])
    plan = feeds.plan("baseline", feed(node, feeds), cursor)
    assert [(fl.name, start) for fl, start in plan] == [(A, 4), (B, 0)]


def test_cursor_past_the_signed_size_requires_resync(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(4)])
    fls = feed(node, feeds)
    token = cursor_of({A: (9, fls[0].checkpoint.root_hash)})
    with pytest.raises(ResyncRequiredError):
        feeds.plan("baseline", fls, token)


def test_cursor_of_a_rebuilt_list_requires_resync(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(4)])
    add(node, A, [sha(9)])
    token = cursor_of({A: (4, b"\xee" * 32)})  # no checkpoint of size 4 has that root
    with pytest.raises(ResyncRequiredError):
        feeds.plan("baseline", feed(node, feeds), token)


def test_cursor_of_a_list_that_left_the_feed_requires_resync(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(4)])
    make_list(node, B, [sha(i, "b") for i in range(4)])
    cursor = feeds.cursor_for("baseline", feed(node, feeds))
    node.store.update_list(list_id=node.get_list(B).id, frozen_reason="fork")
    rows = [r for r in node.store.all_lists() if r.frozen_reason is None]  # policy.offered
    with pytest.raises(ResyncRequiredError):
        feeds.plan("baseline", feeds.lists("baseline", rows), cursor)


def test_live_count_is_the_count_at_the_checkpoint(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(10)])
    add(node, A, [sha(i) for i in range(10, 14)], publish=False)
    remove(node, A, [sha(0), sha(1)], publish=False)
    assert feeds.live_count(feed(node, feeds)[0]) == 10


def test_csv_is_the_set_at_the_checkpoint(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(6)])
    add(node, A, [sha(99)], publish=False)  # not signed yet: not served
    remove(node, A, [sha(2)], publish=False)  # removal not signed yet: still served
    body = b"".join(feeds.csv(feeds.plan("baseline", feed(node, feeds), None), full=True))
    rows = body.decode().splitlines()
    assert rows[0] == "op,list,type,value,category"
    assert rows[1:] == [f"add,{A},sha256,{v},A1" for v in sorted(sha(i) for i in range(6))]


def test_text_is_the_union_once_and_sorted(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(5)])
    make_list(node, B, [sha(i) for i in range(3, 8)])
    plan = feeds.plan("baseline", feed(node, feeds), None)
    text = b"".join(feeds.text(plan, full=True, hash_type="sha256")).decode().split()
    assert text == sorted(sha(i) for i in range(8))
    assert b"".join(feeds.text(plan, full=True, hash_type="md5")) == b""


def test_text_since_keeps_a_hash_another_list_holds(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(5)])
    make_list(node, B, [sha(0)])
    cursor = feeds.cursor_for("baseline", feed(node, feeds))
    remove(node, A, [sha(0), sha(1)])
    plan = feeds.plan("baseline", feed(node, feeds), cursor)
    text = b"".join(feeds.text(plan, full=False, hash_type="sha256")).decode().split()
    assert text == ["-" + sha(1)]


# --- STIX ---------------------------------------------------------------------------------------


def test_patterns_use_stix_hash_names_and_escape() -> None:
    assert stix_pattern("sha256", "ab") == "[file:hashes.'SHA-256' = 'ab']"
    assert stix_pattern("md5", "ab") == "[file:hashes.'MD5' = 'ab']"
    assert stix_pattern("sha1", "ab") == "[file:hashes.'SHA-1' = 'ab']"
    assert stix_pattern("pdq", "ab") == "[file:hashes.'x_pdq' = 'ab']"
    assert stix_pattern("photodna", "a'b\\c") == "[file:hashes.'x_photodna' = 'a\\'b\\\\c']"


def test_ids_are_deterministic_and_per_list_type_value_generation() -> None:
    one = indicator_id(A, "sha256", sha(1))
    assert one == indicator_id(A, "sha256", sha(1))
    assert one.startswith("indicator--")
    others = {
        indicator_id(B, "sha256", sha(1)),
        indicator_id(A, "md5", sha(1)),
        indicator_id(A, "sha256", sha(2)),
        indicator_id(A, "sha256", sha(1), 1),
    }
    assert one not in others
    assert len(others) == 4
    assert collection_id("au-argos", "baseline") == collection_id("au-argos", "baseline")


def taxii(node: Node) -> Taxii:
    return Taxii(node.store, node_id=node.node_id, secret=SECRET, settle_ms=0)


def all_objects(
    t: Taxii,
    node: Node,
    *,
    limit: int = 1000,
    versions: str | None = None,
    after: int = -1,
    types: frozenset[str] | None = frozenset({"indicator"}),
) -> list[tuple[int, dict[str, object]]]:
    out: list[tuple[int, dict[str, object]]] = []
    while True:
        page: Page = t.page(
            "baseline",
            node.store.all_lists(),
            after_us=after,
            limit=limit,
            versions=VersionFilter.parse(versions),
            types=types,
        )
        out += [(i.date_added_us, i.object) for i in page.items]
        if not page.more:
            return out
        assert page.next is not None
        after = t.open_next("baseline", page.next)


def test_objects_are_valid_stix(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(5)])
    node.add(
        A,
        [
            ("md5", hashlib.md5(b"x").hexdigest(), ""),  # noqa: S324  (test data)
            ("pdq", "f" * 64, "B2"),
            ("photodna", "a'b,c", ""),
        ],
        actor="t",
    )
    node.publish(A, actor="t")
    remove(node, A, [sha(1)])
    objs = [o for _d, o in all_objects(taxii(node), node, versions="all", types=None)]
    assert len(objs) == 9 + 3  # the indicators, and the node's identity, extension, TLP
    for obj in objs:
        # Strict, but for {103}: ids are UUIDv5 on purpose (node/feeds/stix_objects.py).
        result = validate_instance(obj, ValidationOptions(strict=True, disabled=["103"]))
        assert result.errors == [], [str(e) for e in result.errors]
        assert result.warnings == [], [str(e) for e in result.warnings]


def test_collection_serves_what_its_indicators_refer_to(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    make_list(node, B, [sha(i, "b") for i in range(2)])
    t = taxii(node)
    objs = [o for _d, o in all_objects(t, node, types=None)]
    assert [o["type"] for o in objs[:3]] == [
        "identity",
        "extension-definition",
        "marking-definition",
    ]
    assert sum(1 for o in objs if o["type"] != "indicator") == 3  # each once per collection
    served = {str(o["id"]) for o in objs}
    for o in objs:
        if o["type"] == "indicator":
            assert o["created_by_ref"] in served
            assert o["object_marking_refs"] == [TLP_MARKINGS["amber"]]
            assert next(iter(o["extensions"])) in served  # type: ignore[call-overload]
    assert objs[2]["name"] == "TLP:AMBER"
    # one object per page never skips or repeats one, leads included
    assert [o["id"] for _d, o in all_objects(t, node, limit=1, types=None)] == [
        o["id"] for o in objs
    ]
    only = all_objects(t, node, types=frozenset({"identity"}))
    assert [o["id"] for _d, o in only] == [identity_id(node.node_id)]


def test_removal_is_a_revoked_version_of_the_same_object(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    remove(node, A, [sha(1)])
    objs = [o for _d, o in all_objects(taxii(node), node, versions="all")]
    added = next(o for o in objs if "revoked" not in o and o["x_hashfed_seq"] == 1)
    revoked = next(o for o in objs if o.get("revoked"))
    assert revoked["id"] == added["id"]
    assert revoked["created"] == added["created"] == added["valid_from"]
    assert parse_timestamp(str(revoked["modified"]), where="m") > parse_timestamp(
        str(added["modified"]), where="m"
    )
    # version=last (the default) shows the revocation, not the add it replaced
    last = [o for _d, o in all_objects(taxii(node), node)]
    assert [o["id"] for o in last].count(added["id"]) == 1
    assert len(last) == 3


def test_hash_added_again_after_removal_is_a_new_object(node: Node) -> None:
    make_list(node, A, [sha(1)])
    remove(node, A, [sha(1)])
    add(node, A, [sha(1)])
    objs = [o for _d, o in all_objects(taxii(node), node, versions="all")]
    assert [bool(o.get("revoked")) for o in objs] == [False, True, False]
    assert objs[0]["id"] == objs[1]["id"] != objs[2]["id"]
    assert objs[2]["id"] == indicator_id(A, "sha256", sha(1), 1)


def test_date_added_is_distinct_and_increasing_across_interleaved_lists(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(5)])
    make_list(node, B, [sha(i, "b") for i in range(5)])
    add(node, A, [sha(i) for i in range(5, 9)])
    add(node, B, [sha(i, "b") for i in range(5, 7)])
    t = taxii(node)
    whole = all_objects(t, node)
    paged = all_objects(t, node, limit=3)
    dates = [d for d, _o in paged]
    assert dates == sorted(set(dates))
    assert len(dates) == 16
    assert [o["id"] for _d, o in paged] == [o["id"] for _d, o in whole]
    # B's first entries became visible before A's second batch: interleaved, not by list
    names = [o["x_hashfed_list"] for _d, o in paged]
    assert names == [A] * 5 + [B] * 5 + [A] * 4 + [B] * 2


def test_added_after_is_exclusive(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(6)])
    t = taxii(node)
    whole = all_objects(t, node)
    third = whole[2][0]
    rest = all_objects(t, node, after=third)
    assert [o["id"] for _d, o in rest] == [o["id"] for _d, o in whole[3:]]


def test_young_checkpoints_wait_for_the_settle_window(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    assert Timelines(node.store, settle_ms=3_600_000).get("baseline").segments == []
    assert len(Timelines(node.store, settle_ms=0).get("baseline").segments) == 1


def test_tampered_next_token_refused(node: Node) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    t = taxii(node)
    token = t.next_token("baseline", 5)
    with pytest.raises(CursorError):
        t.open_next("baseline", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    with pytest.raises(CursorError):
        t.open_next("restricted", token)


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.5Z", 1_500_000),
        ("1970-01-01T00:00:00.0000019Z", 1),
        ("1970-01-01T01:00:00.000001+01:00", 1),
    ],
)
def test_parse_timestamp(text: str, us: int) -> None:
    assert parse_timestamp(text, where="t") == us


@pytest.mark.parametrize("text", ["", "yesterday", "1970-01-01T00:00:00", "1970-01-01T00:00:00.Z"])
def test_malformed_timestamp_refused(text: str) -> None:
    from node.feeds.errors import BadRequestError

    with pytest.raises(BadRequestError):
        parse_timestamp(text, where="t")


def test_date_added_format_has_microseconds() -> None:
    assert format_date_added(1_500_001) == "1970-01-01T00:00:01.500001Z"


def test_no_hash_value_in_cursor(node: Node, feeds: Feeds) -> None:
    make_list(node, A, [sha(i) for i in range(3)])
    cursor = feeds.cursor_for("baseline", feed(node, feeds))
    assert not any(sha(i) in cursor for i in range(3))
