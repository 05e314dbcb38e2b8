"""The matcher: loaded from the database, then following changes, equals brute force."""

from __future__ import annotations

import os
import random

from node.log.hashes import hamming
from node.log.lists import ContentChange
from node.match.matcher import Matcher, Query
from node.node import Node


def _expected(
    content: dict[tuple[str, str, str], str], q: Query, d: int
) -> set[tuple[str, str, int]]:
    out = set()
    for (lst, t, v), cat in content.items():
        if t != q.hash_type:
            continue
        dist = (
            hamming(bytes.fromhex(v), bytes.fromhex(q.value))
            if t == "pdq"
            else (0 if v == q.value else 99)
        )
        if dist <= (d if t == "pdq" else 0):
            out.add((lst, cat, dist))
    return out


def _got(node: Node, m: Matcher, queries: list[Query], d: int) -> list[set[tuple[str, str, int]]]:
    names = {r.id: r.full_name for r in node.store.all_lists()}
    out: list[set[tuple[str, str, int]]] = [set() for _ in queries]
    for h in m.match(queries, max_distance=d):
        out[h.query_index].add((names[h.list_id], h.category, h.distance))
    return out


def test_loaded_then_incremental_matcher_equals_brute_force(node_factory: object) -> None:
    rnd = random.Random(5)
    node = node_factory()  # type: ignore[operator]
    content: dict[tuple[str, str, str], str] = {}
    for name in ("au-argos/a", "au-argos/b"):
        node.create_list(name, label="baseline", actor="t")
        items = [("sha256", os.urandom(32).hex(), rnd.choice("AB")) for _ in range(50)]
        items += [("pdq", os.urandom(32).hex(), "C") for _ in range(50)]
        items += [("photodna", f"pdna-{rnd.random()}", "D") for _ in range(5)]
        node.add(name, items, actor="t")
        content.update({(name, t, v): c for t, v, c in items})
    # The same hash in both lists, under different categories.
    shared = os.urandom(32).hex()
    node.add("au-argos/a", [("sha256", shared, "A")], actor="t")
    node.add("au-argos/b", [("sha256", shared, "B")], actor="t")
    content[("au-argos/a", "sha256", shared)] = "A"
    content[("au-argos/b", "sha256", shared)] = "B"

    m = Matcher()
    assert m.load(node.store) == len(content)
    node.on_change(lambda batch: m.apply(batch.changes))

    # Changes after the load: removals and additions are visible at once.
    gone = [k for k in content if k[0] == "au-argos/a" and k[1] == "pdq"][:10]
    node.remove("au-argos/a", [(t, v) for _, t, v in gone], actor="t")
    for k in gone:
        del content[k]
    new = [("pdq", os.urandom(32).hex(), "N") for _ in range(10)]
    node.add("au-argos/b", new, actor="t")
    content.update({("au-argos/b", t, v): c for t, v, c in new})

    def near(v: str, bits: int) -> str:
        x = int(v, 16)
        for b in rnd.sample(range(256), bits):
            x ^= 1 << b
        return f"{x:064x}"

    pdqs = [v for (_, t, v) in content if t == "pdq"] + [v for (_, t, v) in gone]
    queries = [Query("pdq", near(v, rnd.choice([0, 5, 15, 31, 32, 40]))) for v in pdqs]
    queries += [Query("sha256", v) for (_, t, v) in content if t == "sha256"][:30]
    shared_at = len(queries)
    queries += [Query("sha256", shared), Query("sha256", os.urandom(32).hex())]
    queries += [Query("photodna", v) for (_, t, v) in content if t == "photodna"][:3]
    got = _got(node, m, queries, 31)
    for q, g in zip(queries, got, strict=True):
        assert g == _expected(content, q, 31)
    assert len(got[shared_at]) == 2  # the shared hash hits both lists


def test_apply_figures_count_every_committed_change() -> None:
    m = Matcher()
    assert m.apply_stats() == {"calls": 0, "changes": 0, "last_us": 0, "max_us": 0}
    values = [os.urandom(32).hex() for _ in range(5)]
    m.apply([ContentChange("add", 1, "sha256", v, "A1") for v in values])
    m.apply([ContentChange("remove", 1, "sha256", values[0], "A1")])
    got = m.apply_stats()
    assert (got["calls"], got["changes"]) == (2, 6)
    assert 0 < got["last_us"] <= got["max_us"]
    hits = m.match([Query("sha256", v) for v in values])
    assert sorted(h.query_index for h in hits) == [1, 2, 3, 4]
