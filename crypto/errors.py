"""The hashfed exception hierarchy.

It lives in the lowest layer so that every layer can raise and catch it
without importing upwards. Each class builds its own message from keyword
fields; callers never format messages, and tests assert the class, never the
text. No field ever holds a hash value: hashes are sensitive.

    HashfedError                      base; never raised directly
    ├── ConfigError                   bad settings, key files, data folder
    ├── InputError                    bad user input (a hash, a file line, a field)
    │   ├── UnknownListError          no such list
    │   ├── ListExistsError           the list already exists
    │   ├── NotInListError            removing a hash the list does not hold
    │   └── NotOwnerError             changing a list this node does not own
    ├── VerificationError             remote or stored data rejected
    │   ├── MalformedNoteError        signed-note syntax
    │   ├── MalformedCheckpointError  checkpoint body syntax
    │   ├── UnknownOriginError        checkpoint for another list
    │   ├── NoTrustedSignatureError   no signature from a trusted key
    │   │   └── MissingCosignatureError   no dated cosignature by the owner's cosigner key
    │   ├── MissingWitnessError       fewer witness cosignatures than the owner's policy needs
    │   ├── BadSignatureError         a trusted key's signature does not verify
    │   ├── RootMismatchError         entries do not hash to the signed root
    │   ├── MalformedExportError      a list export's line is not what the format says
    │   ├── InclusionProofError       inclusion proof does not verify
    │   ├── ConsistencyProofError     consistency proof does not verify
    │   ├── RollbackError             checkpoint smaller than one accepted
    │   ├── ForkError                 two signed checkpoints disagree
    │   ├── StaleError                checkpoint older than the maximum age
    │   ├── FutureCheckpointError     checkpoint dated beyond the allowed clock skew
    │   ├── FrozenListError           list frozen after misbehaviour
    │   └── LimitExceededError        a configured bound was hit
    ├── PeerError                     talking to a peer failed
    │   ├── PeerUnreachableError
    │   ├── PeerTimeoutError
    │   └── PeerProtocolError         unexpected status, content type or body
    │       └── PeerLimitError        more bytes or entries than a bound allows
    ├── AuthError                     caller not authenticated / not allowed
    │   ├── NotAuthenticatedError
    │   └── ForbiddenError
    └── StoreError                    the database refused or is inconsistent
        ├── WriteLockTimeoutError     waited the configured time for a write lock
        ├── StorageFullError          the disk (or the database's quota) is full
        └── DatabaseUnavailableError  cannot connect, connection lost, I/O error
"""

from __future__ import annotations

from typing import Any


class HashfedError(Exception):
    """Base of every error hashfed raises on purpose.

    Subclasses set ``code`` (a stable machine-readable name used in API error
    bodies and CLI output) and build ``message`` from their keyword fields.
    """

    code = "error"

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)
        self.message = message if message is not None else self._build_message()
        super().__init__(self.message)

    def _build_message(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.fields.items()) or self.code


# --- configuration -----------------------------------------------------------


class ConfigError(HashfedError):
    """Settings, key files or the data folder are unusable."""

    code = "config_error"


# --- user input ---------------------------------------------------------------


class InputError(HashfedError):
    """User input was rejected. ``where`` names the field, file and line."""

    code = "invalid_input"

    def __init__(self, reason: str, *, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason, where=where)


class UnknownListError(InputError):
    code = "unknown_list"

    def __init__(self, *, list_name: str) -> None:
        self.list_name = list_name
        super().__init__(f"no list named {list_name!r}")


class ListExistsError(InputError):
    code = "list_exists"

    def __init__(self, *, list_name: str) -> None:
        self.list_name = list_name
        super().__init__(f"list {list_name!r} already exists")


class NotInListError(InputError):
    code = "not_in_list"

    def __init__(self, *, list_name: str, where: str | None = None) -> None:
        self.list_name = list_name
        super().__init__(f"the hash is not in list {list_name!r}", where=where)


class NotOwnerError(InputError):
    code = "not_owner"

    def __init__(self, *, list_name: str, node_id: str) -> None:
        self.list_name = list_name
        super().__init__(f"list {list_name!r} is not owned by this node ({node_id})")


# --- verification ---------------------------------------------------------------


class VerificationError(HashfedError):
    """Data that claims to be signed or proven failed a check."""

    code = "verification_failed"


class MalformedNoteError(VerificationError):
    code = "malformed_note"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"malformed signed note: {reason}", reason=reason)


class MalformedCheckpointError(VerificationError):
    code = "malformed_checkpoint"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"malformed checkpoint: {reason}", reason=reason)


class UnknownOriginError(VerificationError):
    code = "unknown_origin"

    def __init__(self, *, expected: str, got: str) -> None:
        super().__init__(
            f"checkpoint origin: expected {expected!r}, got {got!r}", expected=expected, got=got
        )


class NoTrustedSignatureError(VerificationError):
    code = "no_trusted_signature"

    def __init__(self, *, origin: str, trusted: str) -> None:
        super().__init__(
            f"checkpoint for {origin!r} carries no signature by a trusted key ({trusted})",
            origin=origin,
            trusted=trusted,
        )


class MissingCosignatureError(NoTrustedSignatureError):
    code = "missing_cosignature"

    def __init__(self, *, origin: str, trusted: str) -> None:
        VerificationError.__init__(
            self,
            f"checkpoint for {origin!r} carries no timestamped cosignature by the owner's "
            f"cosigner key ({trusted})",
            origin=origin,
            trusted=trusted,
        )


class MissingWitnessError(VerificationError):
    code = "missing_witness_cosignatures"

    def __init__(self, *, origin: str, have: int, need: int) -> None:
        super().__init__(
            f"checkpoint for {origin!r} is cosigned by {have} of the trusted witnesses, "
            f"the policy needs {need}",
            origin=origin,
            have=have,
            need=need,
        )


class BadSignatureError(VerificationError):
    code = "bad_signature"

    def __init__(self, *, origin: str, key_name: str) -> None:
        super().__init__(
            f"signature by {key_name!r} on checkpoint for {origin!r} does not verify",
            origin=origin,
            key_name=key_name,
        )


class RootMismatchError(VerificationError):
    code = "root_mismatch"

    def __init__(self, *, origin: str, size: int, expected: str, got: str) -> None:
        super().__init__(
            f"{origin}: entries up to size {size} hash to root {got}, "
            f"but the signed checkpoint says {expected}",
            origin=origin,
            size=size,
            expected=expected,
            got=got,
        )


class MalformedExportError(VerificationError):
    code = "malformed_export"

    def __init__(self, *, line: int, reason: str) -> None:
        super().__init__(f"list export, line {line}: {reason}", line=line, reason=reason)


class InclusionProofError(VerificationError):
    code = "bad_inclusion_proof"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"inclusion proof rejected: {reason}", reason=reason)


class ConsistencyProofError(VerificationError):
    code = "bad_consistency_proof"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"consistency proof rejected: {reason}", reason=reason)


class RollbackError(VerificationError):
    code = "rollback"

    def __init__(self, *, origin: str, trusted_size: int, new_size: int) -> None:
        super().__init__(
            f"{origin}: checkpoint size {new_size} is smaller than the accepted {trusted_size}",
            origin=origin,
            trusted_size=trusted_size,
            new_size=new_size,
        )


class ForkError(VerificationError):
    code = "fork"

    def __init__(self, *, origin: str, size: int, reason: str) -> None:
        super().__init__(
            f"{origin}: two signed checkpoints disagree at size {size}: {reason}",
            origin=origin,
            size=size,
            reason=reason,
        )


class StaleError(VerificationError):
    code = "stale"

    def __init__(self, *, origin: str, age_seconds: int, max_age_seconds: int) -> None:
        super().__init__(
            f"{origin}: newest checkpoint is {age_seconds}s old, maximum is {max_age_seconds}s",
            origin=origin,
            age_seconds=age_seconds,
            max_age_seconds=max_age_seconds,
        )


class FutureCheckpointError(VerificationError):
    """A checkpoint dated beyond the allowed clock skew: it would never go stale."""

    code = "future_checkpoint"

    def __init__(self, *, origin: str, ahead_seconds: int, max_skew_seconds: int) -> None:
        super().__init__(
            f"{origin}: checkpoint is dated {ahead_seconds}s in the future, "
            f"allowed clock skew is {max_skew_seconds}s",
            origin=origin,
            ahead_seconds=ahead_seconds,
            max_skew_seconds=max_skew_seconds,
        )


class FrozenListError(VerificationError):
    code = "frozen"

    def __init__(self, *, list_name: str, reason: str) -> None:
        super().__init__(
            f"list {list_name!r} is frozen: {reason}", list_name=list_name, reason=reason
        )


class LimitExceededError(VerificationError):
    code = "limit_exceeded"

    def __init__(self, *, limit: str, value: int, maximum: int) -> None:
        super().__init__(
            f"{limit}: {value} exceeds the maximum of {maximum}",
            limit=limit,
            value=value,
            maximum=maximum,
        )


# --- peers ----------------------------------------------------------------------


class PeerError(HashfedError):
    """A peer could not be reached or did not speak the protocol."""

    code = "peer_error"

    def __init__(self, *, peer: str, reason: str) -> None:
        super().__init__(f"peer {peer}: {reason}", peer=peer, reason=reason)


class PeerUnreachableError(PeerError):
    code = "peer_unreachable"


class PeerTimeoutError(PeerError):
    code = "peer_timeout"


class PeerProtocolError(PeerError):
    code = "peer_protocol"


class PeerAuthError(PeerError):
    """The peer refused our credentials: HTTP 401 or 403, or a TLS alert about our certificate.

    Not a network failure: retrying does not help until the certificate,
    token or grant is fixed, so the CLI gives it an exit code of its own.
    """

    code = "peer_auth_refused"


# TLS alerts a server sends when it will not accept the client's certificate.
_AUTH_ALERTS = (
    "certificate required",
    "bad certificate",
    "certificate unknown",
    "unknown ca",
    "certificate revoked",
    "certificate expired",
    "access denied",
)


def is_auth_alert(text: str) -> bool:
    """True when an SSL error's text is a server's alert refusing our certificate."""
    lowered = text.lower().replace("_", " ")
    return "alert" in lowered and any(a in lowered for a in _AUTH_ALERTS)


class PeerLimitError(PeerProtocolError):
    """A peer sent more than a configured bound allows (bytes, entries, line length).

    An endless or oversized answer ends that peer's pull like any other
    protocol failure, with its own code.
    """

    code = "peer_limit"

    def __init__(self, *, peer: str, limit: str, value: int, maximum: int) -> None:
        self.limit, self.value, self.maximum = limit, value, maximum
        super().__init__(peer=peer, reason=f"{limit}: {value} exceeds the maximum of {maximum}")


# --- authentication -------------------------------------------------------------------


class AuthError(HashfedError):
    code = "auth_error"


class NotAuthenticatedError(AuthError):
    code = "not_authenticated"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"not authenticated: {reason}", reason=reason)


class ForbiddenError(AuthError):
    code = "forbidden"

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"forbidden: {reason}", reason=reason)


# --- storage --------------------------------------------------------------------------


class StoreError(HashfedError):
    code = "store_error"


class WriteLockTimeoutError(StoreError):
    """Another writer held a lock (a list's, the audit chain's) past the configured wait."""

    code = "write_lock_timeout"
    # Seconds a client should wait before retrying (HTTP Retry-After).
    retry_after = 1

    def __init__(self, *, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"the database is busy: waited {seconds:g} s for a write lock; retry", seconds=seconds
        )


class StorageFullError(StoreError):
    """The database could not write: its disk or quota is full. Nothing was changed."""

    code = "storage_full"

    def __init__(self, *, operation: str, reason: str) -> None:
        super().__init__(
            f"the database's disk is full ({reason}) during {operation}: "
            "nothing was changed; free space and retry",
            operation=operation,
            reason=reason,
        )


class DatabaseUnavailableError(StoreError):
    """The database cannot be reached or lost the connection. Nothing was changed."""

    code = "database_unavailable"

    def __init__(self, *, operation: str, reason: str) -> None:
        super().__init__(
            f"the database is unavailable ({reason}) during {operation}; retry when it is back",
            operation=operation,
            reason=reason,
        )
