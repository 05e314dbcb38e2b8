"""STIX objects as text (node/feeds/stix_objects.py) and the log's key lookups behind them."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable

import pytest

from node.feeds.stix_objects import (
    NAMESPACE,
    TLP_MARKINGS,
    IndicatorParts,
    _uuid5,
    identity_id,
    indicator_json,
    tlp_for_label,
)
from node.node import Node

NodeFactory = Callable[..., Node]


@pytest.mark.parametrize("name", ["", "a", "au-argos/x|sha256|" + "ab" * 32, "é|∂|1"])
def test_fast_uuid5_is_uuid5(name: str) -> None:
    assert _uuid5(name) == str(uuid.uuid5(NAMESPACE, name))


@pytest.mark.parametrize(
    ("value", "category"),
    [("ab" * 32, "A1"), ("x'y\\z\"q", 'cat "1"'), ("ABCDEF", ""), ("é", "ü")],
)
def test_indicator_text_is_the_json_it_claims(value: str, category: str) -> None:
    parts = IndicatorParts('au-argos/l"x', "au-argos", "restricted", 7, bytes(32))
    text = indicator_json(
        parts,
        object_id="indicator--" + _uuid5("k"),
        seq=3,
        revoked=True,
        hash_type="photodna",
        value=value,
        category=category,
        created_us=1_700_000_000_000_000,
        modified_us=1_700_000_000_000_001,
    )
    obj = json.loads(text)
    assert obj["x_hashfed_category"] == category
    assert value.replace("\\", "\\\\").replace("'", "\\'") in obj["pattern"]
    assert obj["created_by_ref"] == identity_id("au-argos")
    assert obj["object_marking_refs"] == [TLP_MARKINGS["amber+strict"]]
    assert obj["revoked"] is True
    assert obj["modified"] == "2023-11-14T22:13:20.000001Z"


def test_unknown_labels_get_the_narrowest_amber() -> None:
    assert tlp_for_label("baseline") == "amber"
    assert tlp_for_label("restricted") == "amber+strict"
    assert tlp_for_label("something-new") == "amber+strict"


def sha(i: int) -> str:
    return hashlib.sha256(f"key index {i}".encode()).hexdigest()


def test_entries_of_keys_finds_every_add_and_remove_of_a_key(node_factory: NodeFactory) -> None:
    node = node_factory()
    name = "au-argos/keys"
    node.create_list(name, label="baseline", actor="t")
    node.add(name, [("sha256", sha(i), "A1") for i in range(50)], actor="t")
    node.remove(name, [("sha256", sha(3)), ("sha256", sha(7))], actor="t")
    node.add(name, [("sha256", sha(3), "A2")], actor="t")
    lid = node.get_list(name).id
    store = node.store
    assert store.removed_keys(list_id=lid, start=0, end=53) == {
        ("sha256", sha(3)),
        ("sha256", sha(7)),
    }
    assert store.removed_keys(list_id=lid, start=51, end=53) == {("sha256", sha(7))}
    found = store.entries_of_keys(
        list_id=lid, keys=[("sha256", sha(3)), ("sha256", sha(9))], end=53
    )
    assert [(s, op) for s, op, _ts in found[("sha256", sha(3))]] == [
        (3, "add"),
        (50, "remove"),
        (52, "add"),
    ]
    assert [(s, op) for s, op, _ts in found[("sha256", sha(9))]] == [(9, "add")]
    later = store.entries_of_keys(list_id=lid, keys=[("sha256", sha(3))], start=51, end=53)
    assert [(s, op) for s, op, _ts in later[("sha256", sha(3))]] == [(52, "add")]
