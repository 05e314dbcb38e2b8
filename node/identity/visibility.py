"""Who may learn of which list: the one rule, used by every answer the node gives.

Match answers, the federation catalog and its entries, feeds, TAXII and the
dashboard all ask :func:`may_see`; none decides on its own. A caller that
may not see a list learns nothing of it, not even through a match.

* A principal sees the lists whose label is among its labels; an
  administrator (``labels`` is None) sees every label.
* ``private`` never leaves the node: only its administrators see such lists,
  and only in answers (a match, the status page), never in anything handed
  out to keep (``outbound``: feeds, TAXII, federation). No other principal
  can be granted it (:func:`check_grantable`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from crypto.errors import InputError

if TYPE_CHECKING:  # principals.py imports this module
    from node.identity.principals import Principal
    from node.store import ListRow

__all__ = ["PRIVATE_LABEL", "check_grantable", "may_see", "visible_lists"]

PRIVATE_LABEL = "private"


def may_see(principal: Principal, row: ListRow, *, outbound: bool = False) -> bool:
    """Whether ``principal`` may learn of ``row``; ``outbound``: to receive and keep it."""
    if row.label == PRIVATE_LABEL:
        return principal.is_admin and not outbound
    return principal.labels is None or row.label in principal.labels


def visible_lists(
    principal: Principal, rows: Iterable[ListRow], *, outbound: bool = False
) -> dict[int, ListRow]:
    """The lists among ``rows`` that ``principal`` may learn of, by id."""
    return {r.id: r for r in rows if may_see(principal, r, outbound=outbound)}


def check_grantable(role: str, labels: Iterable[str]) -> None:
    """Refuse to grant ``private`` to anyone but an administrator (who has every label).

    Raises:
        InputError: ``private`` among the labels of a non-admin principal.
    """
    if role != "admin" and PRIVATE_LABEL in labels:
        raise InputError(
            f"the {PRIVATE_LABEL!r} label never leaves the node and cannot be granted",
            where="labels",
        )
