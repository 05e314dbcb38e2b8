"""Filtering the audit log (``hashfed audit ls/export``) and listing tokens, on every backend."""

from __future__ import annotations

from typing import Any

from node.store import now_ms


def test_audit_records_filter_by_actor_action_prefix_target_and_time(store: Any) -> None:
    store.append_audit(actor="cli@a", action="list.create", target="a/x", count=0, detail={})
    store.append_audit(actor="acme", action="match.query", target="", count=3, detail={})
    store.append_audit(actor="cli@a", action="list_x", target="a/y", count=1, detail={})
    store.append_audit(actor="cli@a", action="list.publish", target="a/x", count=0, detail={})
    actions = [r.action for r in store.audit_records(action="list.*")]
    assert actions == ["list.create", "list.publish"]  # '_' and '.' are literal, not wildcards
    assert [r.actor for r in store.audit_records(actor="acme")] == ["acme"]
    assert len(store.audit_records(target="a/x")) == 2
    assert store.audit_records(since_ms=now_ms() + 60_000) == []
    assert len(store.audit_records(until_ms=now_ms() + 60_000)) == 4
    newest = store.audit_records(limit=2, newest_first=True)
    assert [r.action for r in newest] == ["list.publish", "list_x"]


def test_all_tokens_never_return_the_hash(store: Any) -> None:
    store.add_principal(name="acme", role="partner", labels=["baseline"], cert_fingerprint=None)
    row = store.get_principal(name="acme")
    store.add_token(
        principal_id=row.id, token_hash="f" * 64, prefix="1a2b3c4d", scopes="feeds", expires_ms=None
    )
    (token,) = store.all_tokens()
    assert token["principal"] == "acme"
    assert token["prefix"] == "1a2b3c4d"
    assert token["revoked"] is False
    assert "f" * 64 not in repr(token)
