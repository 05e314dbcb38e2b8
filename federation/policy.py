"""Sharing labels and subscriptions: what leaves this node, and what we take in.

Outbound, one rule everywhere (catalog, entries, proofs, feeds, TAXII): a
caller receives a list only if the visibility rule
(:mod:`node.identity.visibility`) lets it see the list to keep it (so never
a ``private`` one), the list is not frozen and has a signed checkpoint. A
caller that is not cleared learns nothing, not even that the list exists: it
gets the same 404 as for a list that does not exist.

Inbound, a peer's ``subscribe`` patterns pick which of the lists it offers we
pull: ``*`` (everything offered whose owner's keys we know), ``owner/*`` or
``owner/name``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crypto.errors import ConfigError
from node.identity.principals import Principal
from node.identity.visibility import PRIVATE_LABEL, may_see
from node.store import ListRow

__all__ = [
    "PRIVATE_LABEL",
    "Subscription",
    "may_receive",
    "offered",
    "parse_subscription",
    "subscribed",
]


_OWNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Subscription:
    """A parsed subscribe pattern; ``None`` matches anything."""

    owner: str | None
    name: str | None

    def matches(self, owner: str, name: str) -> bool:
        return (self.owner is None or self.owner == owner) and (
            self.name is None or self.name == name
        )


def parse_subscription(pattern: str) -> Subscription:
    """Parse ``*``, ``owner/*`` or ``owner/name``.

    Raises:
        ConfigError: any other shape.
    """
    if pattern == "*":
        return Subscription(None, None)
    owner, sep, name = pattern.partition("/")
    if sep and _OWNER.fullmatch(owner) and (name == "*" or _NAME.fullmatch(name)):
        return Subscription(owner, None if name == "*" else name)
    raise ConfigError(f"subscribe pattern {pattern!r}: expected '*', 'owner/*' or 'owner/name'")


def subscribed(patterns: Sequence[str], owner: str, name: str) -> bool:
    """Whether any of ``patterns`` takes the list ``owner/name``.

    Raises:
        ConfigError: a pattern is malformed.
    """
    return any(parse_subscription(p).matches(owner, name) for p in patterns)


def may_receive(principal: Principal, row: ListRow) -> bool:
    """Whether ``principal`` may receive ``row`` to keep (checkpoint aside).

    Who sees what is :func:`node.identity.visibility.may_see`; a frozen list
    is kept back as well, since its owner's signed history is in dispute.
    """
    return row.frozen_reason is None and may_see(principal, row, outbound=True)


def offered(principal: Principal, rows: Iterable[ListRow]) -> list[ListRow]:
    """The lists ``principal`` may receive, in the order given."""
    return [r for r in rows if may_receive(principal, r)]
