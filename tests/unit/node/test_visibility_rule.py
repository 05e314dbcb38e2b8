"""The one visibility rule: vectors and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import InputError
from node.identity.principals import Principal
from node.identity.visibility import PRIVATE_LABEL, check_grantable, may_see, visible_lists
from node.store import ListRow

LABELS = ("baseline", "restricted", PRIVATE_LABEL, "other")


def _row(label: str, list_id: int = 1) -> ListRow:
    return ListRow(list_id, "au-argos", f"l{list_id}", label, "", True, None, None, 0)


ADMIN = Principal("ops", "admin", None, "cert")
PARTNER = Principal("acme", "partner", frozenset({"baseline"}), "token")
# Granting private is refused now; a principal of an older database may still carry it.
OLD_PARTNER = Principal("old", "partner", frozenset({"baseline", PRIVATE_LABEL}), "cert")
PEER = Principal("be-fccu", "peer", frozenset({"baseline", "restricted"}), "cert")


@pytest.mark.parametrize(
    ("principal", "label", "outbound", "expected"),
    [
        (PARTNER, "baseline", False, True),
        (PARTNER, "baseline", True, True),
        (PARTNER, "restricted", False, False),
        (PEER, "restricted", True, True),
        (ADMIN, "restricted", True, True),
        (ADMIN, PRIVATE_LABEL, False, True),  # the node's operator, in an answer
        (ADMIN, PRIVATE_LABEL, True, False),  # never handed out, whoever asks
        (OLD_PARTNER, PRIVATE_LABEL, False, False),  # private-leaks-through-match
        (OLD_PARTNER, PRIVATE_LABEL, True, False),
        (PEER, PRIVATE_LABEL, False, False),
    ],
)
def test_vectors(principal: Principal, label: str, outbound: bool, expected: bool) -> None:
    assert may_see(principal, _row(label), outbound=outbound) is expected


principals = st.builds(
    Principal,
    st.just("p"),
    st.sampled_from(("admin", "peer", "partner")),
    st.one_of(st.none(), st.frozensets(st.sampled_from(LABELS))),
    st.sampled_from(("cert", "token", "self")),
)


@given(principals, st.sampled_from(LABELS))
def test_what_is_handed_out_is_also_answered(principal: Principal, label: str) -> None:
    if may_see(principal, _row(label), outbound=True):
        assert may_see(principal, _row(label))


@given(principals, st.booleans())
def test_private_is_seen_only_by_admins_and_never_handed_out(
    principal: Principal, outbound: bool
) -> None:
    seen = may_see(principal, _row(PRIVATE_LABEL), outbound=outbound)
    assert seen == (principal.is_admin and not outbound)


@given(principals, st.lists(st.sampled_from(LABELS), max_size=6))
def test_visible_lists_is_may_see_over_rows(principal: Principal, labels: list[str]) -> None:
    rows = [_row(label, i) for i, label in enumerate(labels)]
    assert set(visible_lists(principal, rows)) == {r.id for r in rows if may_see(principal, r)}


@pytest.mark.parametrize("role", ["peer", "partner"])
def test_private_cannot_be_granted(role: str) -> None:
    with pytest.raises(InputError):
        check_grantable(role, ["baseline", PRIVATE_LABEL])
    check_grantable(role, ["baseline"])
    check_grantable("admin", [PRIVATE_LABEL])
