"""The Alembic migrations and the SQLModel models describe the same schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import node.store.models  # noqa: F401  (registers the tables)
from node.store import MIGRATIONS_DIR, Store, run_migrations
from node.store.engine import script_head


def _script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def test_upgraded_schema_matches_the_models(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            diff = compare_metadata(ctx, SQLModel.metadata)
            assert ctx.get_current_revision() == _script().get_current_head()
    finally:
        store.close()
    assert diff == []


def test_upgrade_is_idempotent(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        run_migrations(store.engine)  # a second upgrade to head does nothing
        tables = set(inspect(store.engine).get_table_names())
    finally:
        store.close()
    assert set(SQLModel.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_open_without_migrating_leaves_the_database_empty(db_url: str) -> None:
    store = Store.open(db_url, migrate=False)
    try:
        assert inspect(store.engine).get_table_names() == []
    finally:
        store.close()


def test_one_linear_history() -> None:
    script = _script()
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    assert all(r.module.downgrade is not None for r in revisions)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", sorted((MIGRATIONS_DIR / "versions").glob("*.py")), ids=str)
def test_migration_files_do_not_import_the_models(path: Path) -> None:
    # A migration must describe the schema as it was, not import today's models.
    text = path.read_text(encoding="utf-8")
    assert "node.store.models" not in text
    assert "from node" not in text


def test_script_head_is_alembics_head() -> None:
    # run_migrations skips Alembic when the database is at this revision.
    assert script_head() == _script().get_current_head()


def test_a_database_behind_the_head_is_upgraded(db_url: str) -> None:
    from alembic import command

    store = Store.open(db_url)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with store.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "-1")
            conn.commit()
        behind = set(inspect(store.engine).get_table_names())
        run_migrations(store.engine)
        with store.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        tables = set(inspect(store.engine).get_table_names())
    finally:
        store.close()
    assert current == script_head()
    assert set(SQLModel.metadata.tables) <= tables
    assert not set(SQLModel.metadata.tables) <= behind  # the downgrade dropped something
