"""The dashboard's sections: built-in ones and those other packages add.

A page of its own (overlaps, sightings, …) registers once, at import, with
:func:`register_section`; the navigation shows it to the roles it names and
:func:`api.ui.router.build_router` includes its router under ``/ui``::

    register_section(Section("overlaps", "Overlaps", "/ui/overlaps",
                             roles=("admin",), router=overlaps_router, order=45))

A section's routes still check the caller themselves (``DashboardUser`` or
``DashboardAdmin`` in api/ui/router.py): the navigation only hides links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.identity.principals import Principal

__all__ = ["Section", "register_section", "sections", "sections_for"]


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    path: str
    roles: tuple[str, ...] = ("admin",)
    router: Any = None  # an APIRouter with the section's own routes, if any
    order: int = 100


_SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> None:
    """Add (or replace, by key) a dashboard section."""
    _SECTIONS[section.key] = section


def sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))


def sections_for(principal: Principal) -> list[Section]:
    """The sections this principal's role may open."""
    return [s for s in sections() if principal.role in s.roles]
