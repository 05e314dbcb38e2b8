"""The one visibility rule against a real node: ``private`` never leaves it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from _nodes import Identity, NodeProcess, free_port, make_identity

from node.identity.principals import PRINCIPALS_MARKER

pytestmark = pytest.mark.network

PRIVATE_HASH = "cd" * 32
BASE_HASH = "ab" * 32


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data = tmp_path_factory.mktemp("vis") / "au-argos"
    n = NodeProcess("au-argos", data, free_port()).init()
    for name, label, value in (("mine", "private", PRIVATE_HASH), ("base", "baseline", BASE_HASH)):
        n.cli("list", "create", f"au-argos/{name}", "--label", label)
        n.cli("list", "add", f"au-argos/{name}", "sha256", value)
        n.cli("list", "publish", f"au-argos/{name}")
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def partner(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Identity:
    ident = make_identity(tmp_path_factory.mktemp("acme"), "acme")
    node.cli("principal", "add", "acme", "--role", "partner", "--labels", "baseline",
             "--cert", str(ident.cert))  # fmt: skip
    time.sleep(2.5)  # the running node trusts newly pinned certificates within 2 s
    return ident


def test_private_cannot_be_granted_to_a_partner(
    node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ident = make_identity(tmp_path_factory.mktemp("greedy"), "greedy")
    r = node.cli("principal", "add", "greedy", "--role", "partner", "--labels",
                 "baseline,private", "--cert", str(ident.cert), check=False)  # fmt: skip
    assert r.returncode != 0
    assert "private" in r.stderr
    assert "Traceback" not in r.stderr
    assert "greedy" not in node.cli("principal", "ls").stdout


def test_private_leaks_through_match_to_a_partner_granted_it_earlier(
    node: NodeProcess, partner: Identity
) -> None:
    # A grant made before the rule existed, straight in the database.
    with sqlite3.connect(node.data / "hashfed.db") as db:
        db.execute("UPDATE principal SET labels = 'baseline,private' WHERE name = 'acme'")
    (node.data / PRINCIPALS_MARKER).touch()
    time.sleep(1.5)
    with node.client(partner) as c:
        hidden = c.get(f"/api/v1/match/sha256/{PRIVATE_HASH}")
        seen = c.get(f"/api/v1/match/sha256/{BASE_HASH}")
        batch = c.post(
            "/api/v1/match?proof=true",
            json={"hashes": [{"type": "sha256", "value": PRIVATE_HASH}]},
        )
    assert hidden.status_code == 200
    assert hidden.json()["hits"] == 0
    assert batch.json()["hits"] == 0
    assert seen.json()["hits"] == 1
    with node.client() as c:  # the node's own operator sees its private list
        assert c.get(f"/api/v1/match/sha256/{PRIVATE_HASH}").json()["hits"] == 1


def test_private_is_in_no_feed_even_for_the_operator(node: NodeProcess) -> None:
    with node.client() as c:
        r = c.get("/taxii2/hashfed/collections/", headers={
            "accept": "application/taxii+json;version=2.1"})  # fmt: skip
        titles = [col["title"] for col in r.json().get("collections", [])]
        assert all("private" not in t for t in titles)
        assert c.get("/feeds/v1/private").status_code == 404
