"""Per-owner witness policy: whose cosignatures a receiver needs, and how many.

Configured beside the owner's keys (``[[peers]]`` or ``[[trusted_owners]]``)::

    witnesses = ["b+1a2b3c4d+BO…"]   # cosigner vkeys (type 0x04) of named witnesses
    witness_quorum = 1               # distinct ones that must have cosigned

The one verifier (federation/trusted_state.py ``ListUpdate``) applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

from config import NodeSettings, PeerSettings, TrustedOwner
from crypto.cosignature import CosignatureVerifier
from crypto.errors import ConfigError
from crypto.keys import NoteVerifier

__all__ = ["owner_witnesses", "witness_policy"]


def owner_witnesses(settings: NodeSettings, owner: str) -> tuple[list[CosignatureVerifier], int]:
    """The witness keys and quorum configured for ``owner`` (the largest quorum wins).

    Raises:
        ConfigError: a witness key is not a cosigner vkey, or the quorum is
            larger than the number of witnesses named (it could never be met).
    """
    keys: list[str] = []
    quorum = 0
    entries: list[PeerSettings | TrustedOwner] = [*settings.peers, *settings.trusted_owners]
    for entry in entries:
        if entry.node_id == owner:
            keys.extend(entry.witnesses)
            quorum = max(quorum, entry.witness_quorum)
    return witness_policy(owner, keys, quorum)


def witness_policy(
    owner: str, keys: Sequence[str], quorum: int
) -> tuple[list[CosignatureVerifier], int]:
    """Parse and check one owner's witness keys and quorum.

    Raises:
        ConfigError: a key is not a cosigner vkey, or the quorum exceeds
            the number of distinct witnesses named.
    """
    out: list[CosignatureVerifier] = []
    for key in dict.fromkeys(keys):
        verifier = NoteVerifier.from_verifier_key(key)
        if not isinstance(verifier, CosignatureVerifier):
            raise ConfigError(f"witness key {verifier.name!r} of {owner} is not a cosigner key")
        out.append(verifier)
    if quorum > len(out):
        raise ConfigError(
            f"witness_quorum {quorum} for {owner} needs at least {quorum} witnesses; "
            f"{len(out)} named"
        )
    return out, quorum
