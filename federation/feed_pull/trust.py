"""The owners' verifier keys a partner trusts: ``--trust OWNER=KEY`` and ``--trust-file``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from crypto.cosignature import CosignatureVerifier
from crypto.errors import ConfigError, HashfedError, InputError
from crypto.keys import NoteVerifier
from federation.witness_policy import witness_policy

__all__ = ["Witnesses", "load_trust", "load_witnesses"]

# Owner → (the witnesses' cosigner keys, how many of them must have cosigned).
Witnesses = dict[str, tuple[list[CosignatureVerifier], int]]


def load_trust(
    pairs: Sequence[str], trust_file: Path | None = None
) -> dict[str, list[NoteVerifier]]:
    """Owner → the verifier keys trusted for its lists, from ``OWNER=KEY`` pairs and a file.

    The file holds one ``KEY``, ``OWNER=KEY`` or ``OWNER KEY`` per line; ``#`` starts a
    comment. A bare key is trusted for the owner its name gives (``owner+keyid+…``).

    Raises:
        InputError: a pair or line is malformed or a key is not a verifier key.
    """
    items = [(f"--trust {p[:40]}", p) for p in pairs]
    if trust_file is not None:
        try:
            lines = trust_file.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=str(trust_file)) from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            head, space, tail = line.partition(" ")
            if space and "=" not in head:  # "OWNER KEY"
                line = f"{head}={tail.strip()}"
            if line:
                items.append((f"{trust_file}:{n}", line))
    trust: dict[str, list[NoteVerifier]] = {}
    for where, item in items:
        owner, sep, key = item.partition("=")
        owner, key = owner.strip(), key.strip()
        if not sep or "+" in owner:
            # A bare verifier key names its owner: ``au-argos+9a268aa7+AS…``
            # (base64 may end in '=', so the '+' decides, not the '=').
            key = item.strip()
            owner = key.split("+", 1)[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", owner):
            raise InputError("expected VERIFIER_KEY or OWNER=VERIFIER_KEY", where=where)
        try:
            trust.setdefault(owner, []).append(NoteVerifier.from_verifier_key(key))
        except (HashfedError, ValueError):
            raise InputError("not a verifier key (name+keyid+base64)", where=where) from None
    return trust


def load_witnesses(pairs: Sequence[str], quorum: int) -> Witnesses:
    """Owner → witness policy, from ``OWNER=COSIGNER_KEY`` pairs (``--witness``).

    Each owner named needs ``quorum`` distinct ones of its witnesses'
    cosignatures on every update (docs/PROTOCOL.md, "Witness policy").

    Raises:
        InputError: a pair is malformed, a key is not a cosigner key (type
            0x04), or ``quorum`` is above the witnesses named for an owner.
    """
    if quorum < 1:
        raise InputError("must be 1 or more", where="--witness-quorum")
    out: Witnesses = {}
    for owner, keys in load_trust(pairs).items():
        try:
            out[owner] = witness_policy(owner, [k.verifier_key for k in keys], quorum)
        except ConfigError as exc:
            raise InputError(exc.message, where="--witness") from None
    return out
