"""Node settings: the schema, its defaults, and loading from ``node.toml`` + env.

Precedence, highest first: ``HASHFED_*`` environment variables, then
``<data>/node.toml``, then the defaults below. Nested keys use ``__`` in the
environment (``HASHFED_LIMITS__MAX_BATCH=500``). Nothing is built at import
time: callers use :func:`load_settings` and pass the result down.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from crypto.errors import ConfigError

NODE_TOML = "node.toml"
NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

Label = str
Role = Literal["admin", "peer", "partner"]


class Limits(BaseModel):
    """Bounds on every input; each says where its default comes from."""

    # A misspelt key must not silently leave a bound at its default.
    model_config = ConfigDict(extra="forbid")

    # The contract for one match request; ~1.3 MB of JSON for sha256.
    max_batch: int = Field(10_000, ge=1, le=100_000)
    # 10,000 PDQ queries as JSON are ~1 MB; 8 MiB leaves room for whitespace.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Entries per federation page: ~200 B each as NDJSON, so ~10 MB a page.
    max_page_entries: int = Field(50_000, ge=1)
    # A peer's response is cut off past this (one page plus headers).
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # Per-principal request budget; a burst of this many, refilled per second.
    rate_limit_per_second: float = Field(200.0, gt=0)
    rate_limit_burst: int = Field(400, ge=1)
    # One pull of one peer may not take longer than this.
    pull_timeout_seconds: float = Field(300.0, gt=0)
    # How long a writer queues for a list's lock (another add, import or pull
    # holds it) before it gives up with 503 and Retry-After: longer than a
    # normal add or page of a pull takes, short enough for a client to retry.
    write_lock_timeout_seconds: float = Field(10.0, gt=0, le=600)
    # Failed logins (bad token, unregistered certificate) per source address:
    # a burst of this many, then one per this many seconds; enough for a
    # misconfigured client to notice, far too few to guess a token.
    auth_failure_burst: int = Field(20, ge=1)
    auth_failure_refill_seconds: float = Field(3.0, gt=0)


class PeerSettings(BaseModel):
    """A peer we pull from (and may serve), as written in node.toml."""

    # A misspelt key (say ``fingerprnt``) must not silently drop a pin.
    model_config = ConfigDict(extra="forbid")

    node_id: str
    url: str
    fingerprint: str | None = None  # pinned certificate, "sha256:<hex>"
    signing_keys: list[str] = Field(default_factory=list)  # note verifier keys
    # Witness policy for this owner's lists: cosigner vkeys (type 0x04) of
    # named witnesses, and how many distinct ones must have cosigned a
    # checkpoint before it is accepted (0: none).
    witnesses: list[str] = Field(default_factory=list)
    witness_quorum: int = Field(0, ge=0)
    labels: list[Label] = Field(default_factory=list)  # what they may receive from us
    subscribe: list[str] = Field(default_factory=lambda: ["*"])  # "owner/*", "owner/name"
    interval_seconds: float = Field(60.0, gt=0)
    # A witness for our lists: we submit each new checkpoint of a list it may
    # receive to its add-checkpoint endpoint and serve its cosignature with it.
    cosigns: bool = False


# Owners we verify but do not pull from directly: a list
# relayed to us is checked against its owner's keys, which come from the
# owner's [[peers]] entry or, if the owner is not our peer, from here.
class TrustedOwner(BaseModel):
    """A list owner whose checkpoint-signing keys we trust (``[[trusted_owners]]``)."""

    # A misspelt ``signing_keys`` must not silently leave an owner untrusted.
    model_config = ConfigDict(extra="forbid")

    node_id: str
    signing_keys: list[str] = Field(default_factory=list)  # note verifier keys
    witnesses: list[str] = Field(default_factory=list)  # as PeerSettings
    witness_quorum: int = Field(0, ge=0)


class SightingSettings(BaseModel):
    """Sightings: reports of an owner's entries, sent back to the owner (``[sightings]``)."""

    # Distinct reporters of false_positive that flag an entry for review.
    false_positive_threshold: int = Field(3, ge=1, le=1000)
    # Per sending principal; a partner scanning a large seizure reports in batches.
    per_minute: int = Field(600, ge=1)
    # A sighting older than this is refused (bounds how long a replay could matter).
    max_age_seconds: int = Field(30 * 86_400, ge=60)


class AlertSettings(BaseModel):
    """Webhook alerts (``[alerts]``)."""

    # A peer failing for longer than this raises one "peer_failing" alert.
    peer_failing_seconds: int = Field(3600, ge=1)
    # Retries: base * 2^attempt seconds, at most retry_max_seconds apart.
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(3600.0, gt=0)
    max_attempts: int = Field(24, ge=1)


class NodeSettings(BaseSettings):
    """Everything a node needs to start. See docs/OPERATIONS.md for each key."""

    model_config = SettingsConfigDict(
        env_prefix="HASHFED_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(default=Path("data"), exclude=True)
    node_id: str
    role: Literal["agency", "partner"] = "agency"
    database_url: str | None = None  # default: SQLite in the data folder
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    public_url: str | None = None  # what peers dial; default https://host:port

    signing_key_file: str = "keys/signing.key"
    # Cosigns (dates) this node's checkpoints and witnesses others'; created
    # at the first start that lacks it. Never the same key as the one above.
    cosigning_key_file: str = "keys/cosigning.key"
    tls_cert_file: str = "tls/node.crt"
    tls_key_file: str = "tls/node.key"
    # Trust anchors for client and peer certificates: federation CAs and
    # pinned self-signed peer certificates (PEM files).
    tls_ca_files: list[str] = Field(default_factory=list)
    tls_pinned_cert_files: list[str] = Field(default_factory=list)
    # CRLs of the CAs above (PEM); <data>/ca/crl.pem, written by
    # `hashfed ca revoke`, is always checked too. Re-read when they change.
    tls_crl_files: list[str] = Field(default_factory=list)
    # "optional" lets partners without a certificate connect and present an
    # API token instead (feeds, TAXII); a certificate sent is still verified.
    tls_client_auth: Literal["required", "optional"] = "required"
    # Behind a TLS-terminating proxy only: the header carrying the client
    # certificate (URL-encoded PEM). Off unless set.
    trusted_proxy_cert_header: str | None = None
    # The proxy's own client certificates (sha256:<hex>): the header is
    # believed only on a connection authenticated with one of these.
    trusted_proxy_fingerprints: list[str] = Field(default_factory=list)

    # Owners re-sign a fresh checkpoint at least this often, even unchanged,
    # so receivers can tell a live list from a frozen one.
    heartbeat_seconds: int = Field(3600, ge=10)
    # A received list whose newest checkpoint is older than this is stale.
    max_checkpoint_age_seconds: int = Field(6 * 3600, ge=60)
    # A checkpoint dated further ahead than this is refused: a far-future
    # timestamp would otherwise keep a list from ever going stale.
    max_clock_skew_seconds: int = Field(300, ge=0, le=86_400)
    pdq_default_max_distance: int = Field(31, ge=0, le=256)
    pdq_min_quality: int = Field(50, ge=0, le=100)
    # Two lists' PDQ codes this near (Hamming) are recorded as an overlap.
    overlap_pdq_distance: int = Field(31, ge=0, le=64)

    # Prometheus metrics at /metrics, for administrators and `metrics` tokens.
    metrics: bool = True
    # Liveness and readiness over plain HTTP, for a load balancer or an
    # orchestrator that holds no client certificate. Off unless a port is set;
    # loopback by default, since it answers anyone who can reach it.
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(None, ge=1, le=65535)

    limits: Limits = Field(default_factory=Limits)
    peers: list[PeerSettings] = Field(default_factory=list)
    trusted_owners: list[TrustedOwner] = Field(default_factory=list)
    sightings: SightingSettings = Field(default_factory=SightingSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # node.toml arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @field_validator("node_id")
    @classmethod
    def _node_id_shape(cls, v: str) -> str:
        if not NODE_ID_RE.fullmatch(v):
            raise ValueError("expected lowercase letters, digits and '-', at most 63 characters")
        return v

    @model_validator(mode="after")
    def _fail_closed(self) -> NodeSettings:
        if self.trusted_proxy_cert_header is not None and self.host not in {
            "127.0.0.1",
            "::1",
            "localhost",
        }:
            raise ValueError(
                "trusted_proxy_cert_header is only allowed when listening on loopback "
                "behind the proxy; anyone could otherwise forge the header"
            )
        if self.trusted_proxy_cert_header is not None and not self.trusted_proxy_fingerprints:
            raise ValueError(
                "trusted_proxy_cert_header needs trusted_proxy_fingerprints: the proxy's own "
                "client certificate, so that no other caller can send the header"
            )
        for fpr in self.trusted_proxy_fingerprints:
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", fpr):
                raise ValueError("trusted_proxy_fingerprints: expected sha256:<64 hex digits>")
        return self

    # --- derived paths -----------------------------------------------------------

    def path(self, relative: str) -> Path:
        """Resolve a path from the settings against the data folder."""
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or SQLite in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hashfed.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        return self.public_url or f"https://{self.host}:{self.port}"


def _format_validation_error(exc: ValidationError, source: Path) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{key}: {err['msg']}")
    return f"{source}: invalid settings: " + "; ".join(parts)


def read_node_toml(data_dir: Path) -> dict[str, Any]:
    """Read ``node.toml`` from the data folder; a missing file is an error."""
    path = data_dir / NODE_TOML
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; run `hashfed init --node-id ID --data {data_dir}` first"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(data_dir: Path, **overrides: Any) -> NodeSettings:
    """Load the node's settings from its data folder and the environment.

    Raises:
        ConfigError: node.toml is missing or malformed, or a value is invalid;
            the message names the file and the key.
    """
    data = read_node_toml(data_dir)
    data.update(overrides)
    try:
        return NodeSettings(data_dir=data_dir, **data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, data_dir / NODE_TOML)) from None


def render_node_toml(node_id: str, *, role: str = "agency", port: int = 8443) -> str:
    """The node.toml written by ``hashfed init``: the essentials, commented."""
    return (
        "# hashfed node settings. Every key can be overridden by HASHFED_<KEY>.\n"
        f'node_id = "{node_id}"\n'
        f'role = "{role}"\n'
        '# database_url = "postgresql+psycopg://user@host/db"  # default: SQLite here\n'
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        "heartbeat_seconds = 3600\n"
        "max_checkpoint_age_seconds = 21600\n"
        "tls_ca_files = []\n"
        "tls_pinned_cert_files = []\n"
        "\n[limits]\n"
        "max_batch = 10000\n"
    )
