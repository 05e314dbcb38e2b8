"""Dependencies flow one way: api -> federation -> node -> crypto; config is read by all.

And one writer: only node/log/writer/ (and the store itself) calls the
store's list-writing methods, so every list change carries its audit record
and reads the list's state under its lock.

Imports are read with ``ast``, so a lazy import inside a function counts too;
imports under ``if TYPE_CHECKING:`` do not (they never run). Packages that do
not exist yet are skipped. The checker itself is tested on a fake tree, so a
rule that can never fire would be noticed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
OURS = ("config", "crypto", "node", "federation", "api")

# Package -> packages of ours it must never import.
FORBIDDEN_OURS: dict[str, set[str]] = {
    "crypto": {"config", "node", "federation", "api"},
    "config": {"node", "federation", "api"},
    "node": {"federation", "api"},
    "federation": {"api"},
}

DB_MODULES = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "psycopg2", "sqlite3", "asyncpg")
# Only the store talks to the database; the migrations are run by it.
DB_ALLOWED = ("node/store/",)
# models.py declares tables: column types and constraints, nothing that connects or queries.
MODELS = "node/store/models.py"
MODELS_ALLOWED_NAMES = {
    "BigInteger",
    "Boolean",
    "CheckConstraint",
    "Column",
    "Field",
    "ForeignKey",
    "Index",
    "Integer",
    "LargeBinary",
    "Relationship",
    "SQLModel",
    "String",
    "Text",
    "UniqueConstraint",
}
MODELS_ALLOWED_MODULES = {"sqlalchemy", "sqlmodel"}

# Only the federation client opens outbound connections.
NET_MODULES = ("httpx", "requests", "urllib3", "aiohttp", "urllib.request", "http.client")
# federation/webhooks.py: webhook receivers are not peers (plain HTTPS, no
# federation certificate), so the peer client's checks do not apply to them.
NET_ALLOWED = ("federation/client/", "federation/webhooks.py")


# The store's methods that change a list, and the only modules that may call them.
LIST_WRITES = {
    "append",
    "add_checkpoint",
    "change_list",
    "create_list",
    "record_evidence",
    "update_list",
}
LIST_WRITES_ALLOWED = ("node/log/writer/", "node/store/")


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    names: tuple[str, ...]  # for ``from x import a, b``; empty for ``import x``
    line: int

    def candidates(self) -> list[str]:
        """Every module this may load: ``from a import b`` may load ``a.b``."""
        return [self.module] + [f"{self.module}.{n}" if self.module else n for n in self.names]


def _package_of(rel: str) -> str:
    return rel.split("/", 1)[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(rel: str, level: int, module: str | None) -> str:
    """The absolute name of a relative import in the file ``rel``."""
    package = rel.removesuffix(".py").split("/")[:-1]  # the package the file is in
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(path: Path, rel: str) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(rel, node.level, node.module) if node.level else (node.module or "")
            yield Import(module, tuple(a.name for a in node.names), node.lineno)


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(root: Path) -> list[str]:
    """Every import that breaks a rule, as ``path:line: reason``."""
    found: list[str] = []
    for package in OURS:
        pkg_dir = root / package
        if not pkg_dir.is_dir():
            continue
        for path in sorted(pkg_dir.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for imp in imports_of(path, rel):
                where = f"{rel}:{imp.line}"
                mods = [m for m in imp.candidates() if m]
                if any(_top(m) in FORBIDDEN_OURS.get(package, set()) for m in mods):
                    found.append(f"{where}: {package} imports {imp.module or imp.names}")
                db_free = rel.startswith(DB_ALLOWED) and rel != MODELS
                if any(_matches(m, DB_MODULES) for m in mods) and not db_free:
                    if rel == MODELS:
                        bad = set(imp.names) - MODELS_ALLOWED_NAMES
                        if imp.module not in MODELS_ALLOWED_MODULES or not imp.names or bad:
                            found.append(f"{where}: models.py imports {imp.module} {sorted(bad)}")
                    else:
                        found.append(
                            f"{where}: only node/store/ talks to the database ({imp.module})"
                        )
                if any(_matches(m, NET_MODULES) for m in mods) and not rel.startswith(NET_ALLOWED):
                    found.append(
                        f"{where}: only federation/client/ opens connections ({imp.module})"
                    )
    return found


def _names_a_store(expr: ast.expr) -> bool:
    """``store``, ``self.store``, ``node.store``, ``other_store``: a receiver that is a Store."""
    name = expr.id if isinstance(expr, ast.Name) else getattr(expr, "attr", "")
    return name == "store" or name.endswith("_store")


def list_write_violations(root: Path) -> list[str]:
    """Every call of a list-writing store method outside the writer, as ``path:line: call``."""
    found: list[str] = []
    for package in OURS:
        pkg_dir = root / package
        if not pkg_dir.is_dir():
            continue
        for path in sorted(pkg_dir.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(LIST_WRITES_ALLOWED):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LIST_WRITES
                    and _names_a_store(node.func.value)
                ):
                    found.append(f"{rel}:{node.lineno}: store.{node.func.attr} outside the writer")
    return found


# --- the real tree ---------------------------------------------------------------------------


def test_packages_exist() -> None:
    assert (ROOT / "crypto").is_dir()
    assert (ROOT / "node").is_dir()


@pytest.mark.parametrize("package", OURS)
def test_layering(package: str) -> None:
    if not (ROOT / package).is_dir():
        pytest.skip(f"{package}/ does not exist yet")
    found = [v for v in violations(ROOT) if v.startswith(f"{package}/")]
    assert found == []


def test_only_the_writer_changes_lists() -> None:
    assert list_write_violations(ROOT) == []


def test_the_writer_really_writes_through_the_store() -> None:
    # Guards the guard: the rule above must be looking at calls that exist.
    called = {
        n.func.attr
        for path in sorted((ROOT / "node/log/writer").glob("*.py"))
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and _names_a_store(n.func.value)
    }
    assert {"change_list", "create_list"} <= called


def test_store_really_is_where_the_database_is() -> None:
    # Guards the guard: if the store stopped importing sqlalchemy the rule
    # above would be checking nothing.
    rel = "node/store/engine.py"
    assert any(_top(i.module) == "sqlalchemy" for i in imports_of(ROOT / rel, rel))


# --- the checker on a fake tree --------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("crypto/keys.py", "from config import load_settings\n"),
        ("crypto/keys.py", "def f():\n    import node.store\n"),
        ("crypto/tls.py", "import httpx\n"),
        ("config/settings.py", "from node.log.hashes import REGISTRY\n"),
        ("node/log/lists.py", "from federation.client import Client\n"),
        ("node/log/lists.py", "from sqlalchemy import select\n"),
        ("node/identity/audit.py", "import sqlite3\n"),
        ("node/store/models.py", "from sqlalchemy import create_engine\n"),
        ("node/store/models.py", "from sqlmodel import Session\n"),
        ("node/store/models.py", "import sqlalchemy\n"),
        ("federation/sync.py", "import httpx\n"),
        ("federation/client_extra.py", "import httpx\n"),
        ("federation/sync.py", "from api.app import create_app\n"),
        ("federation/sync.py", "from .. import api\n"),
        ("api/app.py", "from sqlalchemy.orm import Session\n"),
        ("api/app.py", "import urllib.request\n"),
        ("api/app.py", "from urllib import request\n"),
        ("node/__init__.py", "from . import store\nfrom sqlalchemy import text\n"),
    ],
)
def test_checker_catches(tmp_path: Path, rel: str, source: str) -> None:
    root = _tree(tmp_path, {rel: source})
    assert len(violations(root)) == 1


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("crypto/keys.py", "import hashlib\nfrom crypto.errors import ConfigError\n"),
        ("crypto/tls.py", "import ssl\n"),
        ("config/settings.py", "from crypto.errors import ConfigError\n"),
        ("node/store/log.py", "from sqlalchemy import create_engine, select\n"),
        ("node/store/migrations/env.py", "from alembic import context\nimport sqlmodel\n"),
        (
            "node/store/models.py",
            "from sqlalchemy import BigInteger, Column\nfrom sqlmodel import Field, SQLModel\n",
        ),
        (
            "node/log/lists.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from federation.sync import Sync\n",
        ),
        ("node/log/lists.py", "from ..store import Store\nfrom . import entry\n"),
        ("federation/client/peer.py", "import httpx\nfrom node.store import Store\n"),
        ("api/app.py", "from federation import sync\nfrom node import lists\n"),
    ],
)
def test_checker_allows(tmp_path: Path, rel: str, source: str) -> None:
    root = _tree(tmp_path, {rel: source})
    assert violations(root) == []


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("federation/heartbeat.py", "def f(node):\n    node.store.add_checkpoint(list_id=1)\n"),
        ("federation/sync.py", "def f(self):\n    self.node.store.append(list_id=1)\n"),
        ("federation/cli.py", "def f(store):\n    store.update_list(list_id=1)\n"),
        ("api/routes/lists.py", "def f(s):\n    s.node.store.change_list(list_id=1, plan=p)\n"),
        ("node/cli.py", "def f(other_store):\n    other_store.record_evidence(list_id=1)\n"),
        ("node/node.py", "def f(self):\n    self.store.create_list(owner='a')\n"),
        ("node/log/writer_extra.py", "def f(store):\n    store.change_list(list_id=1)\n"),
    ],
)
def test_list_write_checker_catches(tmp_path: Path, rel: str, source: str) -> None:
    root = _tree(tmp_path, {rel: source})
    assert len(list_write_violations(root)) == 1


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("node/log/writer/local.py", "def f(store):\n    store.change_list(list_id=1, plan=p)\n"),
        ("node/store/log.py", "def f(self):\n    self.change_list(list_id=1, plan=p)\n"),
        ("api/routes/lists.py", "def f(state):\n    state.node.create_list('a/b')\n"),
        ("federation/sync.py", "def f(items):\n    items.append(1)\n"),
        ("federation/sync.py", "def f(node):\n    node.store.latest_checkpoint(list_id=1)\n"),
    ],
)
def test_list_write_checker_allows(tmp_path: Path, rel: str, source: str) -> None:
    root = _tree(tmp_path, {rel: source})
    assert list_write_violations(root) == []
