"""Principals and their API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from crypto.errors import StoreError
from node.store.engine import StoreBase, now_ms
from node.store.rows import (
    PrincipalRow,
    _principal_row,
)
from node.store.tables import (
    _principals,
    _revoked_keys,
    _tokens,
)


class PrincipalQueries(StoreBase):
    def add_principal(
        self,
        *,
        name: str,
        role: str,
        labels: Iterable[str],
        cert_fingerprint: str | None,
        issuer_fingerprint: str | None = None,
        public_key: str | None = None,
    ) -> PrincipalRow:
        try:
            with self.write() as conn:
                conn.execute(
                    _principals.insert().values(
                        name=name,
                        role=role,
                        labels=",".join(sorted(set(labels))),
                        cert_fingerprint=cert_fingerprint,
                        issuer_fingerprint=issuer_fingerprint,
                        public_key=public_key,
                        created_ms=now_ms(),
                    )
                )
        except IntegrityError:
            raise StoreError(
                f"a principal named {name!r} or with that certificate exists already"
            ) from None
        row = self.get_principal(name=name)
        assert row is not None
        return row

    def get_principal(
        self, *, name: str | None = None, cert_fingerprint: str | None = None
    ) -> PrincipalRow | None:
        stmt = select(_principals)
        if name is not None:
            stmt = stmt.where(_principals.c.name == name)
        elif cert_fingerprint is not None:
            stmt = stmt.where(_principals.c.cert_fingerprint == cert_fingerprint)
        else:
            raise ValueError("name or cert_fingerprint is required")
        with self.read() as conn:
            r = conn.execute(stmt).first()
        return _principal_row(r) if r else None

    def all_principals(self) -> list[PrincipalRow]:
        with self.read() as conn:
            rows = conn.execute(select(_principals).order_by(_principals.c.name)).all()
        return [_principal_row(r) for r in rows]

    def remove_principal(self, *, name: str) -> bool:
        """Remove a principal and its tokens; the key it was bound to is revoked for good."""
        with self.write() as conn:
            r = conn.execute(
                select(_principals.c.id, _principals.c.public_key).where(_principals.c.name == name)
            ).first()
            if r is None:
                return False
            conn.execute(delete(_tokens).where(_tokens.c.principal_id == r.id))
            conn.execute(delete(_principals).where(_principals.c.id == r.id))
            if r.public_key is not None:
                # Re-adding the name later must not bring the old certificate back.
                known = conn.execute(
                    select(_revoked_keys.c.public_key).where(
                        _revoked_keys.c.public_key == r.public_key
                    )
                ).first()
                if known is None:
                    conn.execute(
                        _revoked_keys.insert().values(
                            public_key=r.public_key, name=name, revoked_ms=now_ms()
                        )
                    )
        return True

    def bind_public_key(self, *, name: str, public_key: str) -> PrincipalRow | None:
        """Bind a CA-issued principal to the key it first authenticated with.

        Only a principal not bound yet is changed; the row as it is afterwards
        is returned, so a caller sees whichever key won a race.
        """
        with self.write() as conn:
            conn.execute(
                update(_principals)
                .where(_principals.c.name == name, _principals.c.public_key.is_(None))
                .values(public_key=public_key)
            )
        return self.get_principal(name=name)

    def is_key_revoked(self, *, public_key: str) -> bool:
        with self.read() as conn:
            r = conn.execute(
                select(_revoked_keys.c.public_key).where(_revoked_keys.c.public_key == public_key)
            ).first()
        return r is not None

    def add_token(
        self,
        *,
        principal_id: int,
        token_hash: str,
        prefix: str,
        scopes: str,
        expires_ms: int | None,
    ) -> None:
        with self.write() as conn:
            conn.execute(
                _tokens.insert().values(
                    principal_id=principal_id,
                    token_hash=token_hash,
                    prefix=prefix,
                    scopes=scopes,
                    created_ms=now_ms(),
                    expires_ms=expires_ms,
                )
            )

    def principal_for_token(self, *, token_hash: str) -> tuple[PrincipalRow, str] | None:
        """The principal and scopes of a live token, or None."""
        with self.read() as conn:
            r = conn.execute(
                select(_principals, _tokens.c.scopes, _tokens.c.expires_ms)
                .join(_tokens, _tokens.c.principal_id == _principals.c.id)
                .where(_tokens.c.token_hash == token_hash, _tokens.c.revoked.is_(False))
            ).first()
        if r is None or (r.expires_ms is not None and r.expires_ms < now_ms()):
            return None
        return _principal_row(r), r.scopes

    def all_tokens(self) -> list[dict[str, Any]]:
        """Every token's public facts (never its hash), oldest first."""
        with self.read() as conn:
            rows = conn.execute(
                select(
                    _principals.c.name,
                    _tokens.c.prefix,
                    _tokens.c.scopes,
                    _tokens.c.created_ms,
                    _tokens.c.expires_ms,
                    _tokens.c.revoked,
                )
                .join(_principals, _tokens.c.principal_id == _principals.c.id)
                .order_by(_tokens.c.id)
            ).all()
        return [
            {
                "principal": r.name,
                "prefix": r.prefix,
                "scopes": r.scopes,
                "created_ms": r.created_ms,
                "expires_ms": r.expires_ms,
                "revoked": bool(r.revoked),
            }
            for r in rows
        ]

    def revoke_tokens(self, *, prefix: str) -> int:
        with self.write() as conn:
            res = conn.execute(
                update(_tokens).where(_tokens.c.prefix == prefix).values(revoked=True)
            )
        return res.rowcount
