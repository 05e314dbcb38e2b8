"""Help text as a person reads it: ``--type TYPE``, not ``--type <str>``.

Typer 0.2x prints a Python type tag beside every flag (``<bool>``, ``<str>``,
``<path>``) and braces around arguments in the usage line; neither helps
someone deciding what to type. Importing this module (node/cli.py does)
makes options show their value's name (``--data DATA``, nothing for flags,
the choices for a choice) and arguments their upper-case name, as click does.
The patch is skipped, leaving typer's own text, if typer's internals change.
"""

from __future__ import annotations

from typing import Any

import typer.core

__all__ = ["install"]

# What a few common options take, named for what to type rather than the flag.
_VALUE_NAMES = {"data": "DIR", "out": "PATH", "cert": "FILE", "key": "FILE", "ca": "FILE"}


def _option_type(self: Any, ctx: Any = None) -> str | None:
    if self.metavar is not None:
        return str(self.metavar)
    if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
        return None
    desc = getattr(self, "type_descriptor", None)
    if desc is not None and getattr(desc, "is_choice", False) and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    long = next((o for o in getattr(self, "opts", []) if o.startswith("--")), None)
    name = long[2:] if long else str(self.name or "value")
    return _VALUE_NAMES.get(name, name.replace("-", "_").upper())


def _argument_type(self: Any, ctx: Any = None) -> str | None:
    return None


def _argument_name(self: Any) -> str:
    return str(self.metavar if self.metavar is not None else (self.name or "arg").upper())


def _usage_name(self: Any) -> str:
    name = _argument_name(self)
    if not self.required:
        name = f"[{name}]"
    if self.nargs != 1:
        name += "..."
    return name


def install() -> None:
    option, argument = (
        getattr(typer.core, "TyperOption", None),
        getattr(typer.core, "TyperArgument", None),
    )
    if option is None or argument is None:
        return
    if hasattr(option, "display_type_rich") and hasattr(option, "display_type"):
        option.display_type_rich = _option_type
        option.display_type = _option_type
    if hasattr(argument, "display_type_rich") and hasattr(argument, "display_name_raw"):
        argument.display_type_rich = _argument_type
        argument.display_type = _argument_type
        argument.display_name_raw = property(_argument_name)
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = _usage_name


install()
