"""This node as a witness (c2sp.org/tlog-witness ``add-checkpoint``).

A log (another hashfed owner, or any C2SP log whose key this node trusts for
the origin) submits a checkpoint with a consistency proof from the last one
this node cosigned for that origin. The node cosigns it, dated, with its
cosigner key (crypto/cosignature.py) only if it is consistent; the check of
the old size and the update of the stored checkpoint are one compare-and-swap
(node/store/witness.py), so two racing requests cannot roll the record back.

No I/O here besides the store; the route (api/routes/witness.py) only parses
HTTP and writes the answer.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crypto.checkpoint import ORIGIN_PREFIX, open_checkpoint
from crypto.cosignature import CosignatureSigner, CosignatureVerifier
from crypto.errors import (
    BadSignatureError,
    ConsistencyProofError,
    HashfedError,
    LimitExceededError,
    NoTrustedSignatureError,
)
from crypto.keys import NoteVerifier
from crypto.merkle import verify_consistency
from node.store import Store

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "Answer",
    "add_checkpoint",
    "cosign_accepted",
]

log = logging.getLogger(__name__)

# c2sp.org/tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_PROOF_LINES = 63
# 63 base64 hashes (45 bytes each) and a checkpoint note (crypto.note bounds it
# to 1 MiB, but a checkpoint with a few dozen signatures is a few kB).
MAX_BODY_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CAS_TRIES = 3


@dataclass(frozen=True)
class Answer:
    """The HTTP answer the spec prescribes: status, body, content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _bad(reason: str) -> Answer:
    return Answer(400, reason + "\n")


def _parse(body: bytes) -> tuple[int, list[bytes], str] | Answer:
    if len(body) > MAX_BODY_BYTES:
        return Answer(413, f"request body over {MAX_BODY_BYTES} bytes\n")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _bad("the body is not UTF-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        return _bad("no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not _DECIMAL.fullmatch(first[4:]):
        return _bad("the first line must be 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        return _bad(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for number, line in enumerate(lines[1:], 2):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            h = b""
        if len(h) != 32:
            return _bad(f"line {number} is not a base64 hash")
        proof.append(h)
    return int(first[4:]), proof, note


def add_checkpoint(
    store: Store,
    *,
    body: bytes,
    cosigner: CosignatureSigner,
    log_keys: Callable[[str], Sequence[NoteVerifier]],
    now: int,
) -> Answer:
    """Handle one ``add-checkpoint`` request, per c2sp.org/tlog-witness.

    Args:
        store: Where the latest cosigned checkpoint per origin is kept.
        body: The request body: ``old <size>``, proof lines, empty line, note.
        cosigner: This node's cosigner key.
        log_keys: The log keys trusted for an owner node id (empty if none).
        now: The cosignature's time, Unix seconds.

    Returns:
        200 with the cosignature line; 400 malformed; 403 no trusted log
        signature; 404 unknown origin; 409 (with the current size as
        ``text/x.tlog.size``) when the old size is not what this node last
        cosigned, or the same size has another root; 422 a consistency
        proof that does not verify.
    """
    parsed = _parse(body)
    if isinstance(parsed, Answer):
        return parsed
    old_size, proof, note = parsed
    if old_size == 0 and proof:
        return _bad("a proof from size 0 must be empty")
    return _cosign(
        store,
        old_size=old_size,
        proof_for=lambda _old, _new: proof,
        note=note,
        cosigner=cosigner,
        log_keys=log_keys,
        now=now,
    )


def cosign_accepted(
    store: Store,
    *,
    note: str,
    consistency_proof: Callable[[int, int], Sequence[bytes]],
    cosigner: CosignatureSigner,
    log_keys: Callable[[str], Sequence[NoteVerifier]],
    now: int,
) -> str | None:
    """Cosign, as a witness, a checkpoint this node just verified and stored.

    The same rules as :func:`add_checkpoint`, from the last checkpoint this
    node cosigned for the origin, with the consistency proof computed from
    the entries this node holds (``consistency_proof(old_size, new_size)``).

    Returns:
        The cosignature line, or None when this node has cosigned a larger
        tree for the origin already, or the checkpoint is not consistent
        with the one it cosigned (both logged, without hashes).
    """
    origin = note.split("\n", 1)[0]
    current = store.witnessed(origin=origin)
    answer = _cosign(
        store,
        old_size=current.size if current else 0,
        proof_for=consistency_proof,
        note=note,
        cosigner=cosigner,
        log_keys=log_keys,
        now=now,
    )
    if answer.status != 200:
        log.info(
            "witness: not cosigning %s: HTTP %d %s", origin, answer.status, answer.body.strip()
        )
        return None
    return answer.body


def _cosign(
    store: Store,
    *,
    old_size: int,
    proof_for: Callable[[int, int], Sequence[bytes]],
    note: str,
    cosigner: CosignatureSigner,
    log_keys: Callable[[str], Sequence[NoteVerifier]],
    now: int,
) -> Answer:
    origin = note.split("\n", 1)[0]
    owner = (
        origin[len(ORIGIN_PREFIX) :].split("/", 1)[0] if origin.startswith(ORIGIN_PREFIX) else ""
    )
    keys = [k for k in log_keys(owner) if not isinstance(k, CosignatureVerifier)] if owner else []
    if not keys:
        return Answer(404, "unknown origin\n")
    try:
        cp, opened = open_checkpoint(note, origin=origin, verifiers=keys)
    except (NoTrustedSignatureError, BadSignatureError):
        return Answer(403, "no valid signature by a key trusted for this origin\n")
    except LimitExceededError:
        return Answer(413, "checkpoint too large\n")
    except HashfedError as exc:
        return _bad(exc.message)
    if old_size > cp.size:
        return _bad("the old size is larger than the checkpoint's")
    proof = list(proof_for(old_size, cp.size)) if 0 < old_size < cp.size else []
    for _ in range(_CAS_TRIES):
        current = store.witnessed(origin=origin)
        have = current.size if current else 0
        if old_size != have:
            return Answer(409, f"{have}\n", SIZE_CONTENT_TYPE)
        if current is not None:
            if cp.size == current.size and cp.root_hash != current.root_hash:
                # Two roots signed for one size: the log forked. Keep no cosignature.
                log.warning("witness: %s signed two roots for size %d", origin, cp.size)
                return Answer(409, f"{have}\n", SIZE_CONTENT_TYPE)
            if cp.size > current.size:
                try:
                    verify_consistency(
                        current.size, cp.size, proof, current.root_hash, cp.root_hash
                    )
                except ConsistencyProofError:
                    log.warning("witness: %s: inconsistent checkpoint at %d", origin, cp.size)
                    return Answer(422, "the consistency proof does not verify\n")
        old = (current.size, current.root_hash) if current else None
        if store.advance_witnessed(
            origin=origin,
            old=old,
            size=cp.size,
            root_hash=cp.root_hash,
            note=note,
            cosigned_at=now,
        ):
            return Answer(200, cosigner.line(opened.text, now))
    current = store.witnessed(origin=origin)
    return Answer(409, f"{current.size if current else 0}\n", SIZE_CONTENT_TYPE)
