"""Settings: the schema, defaults, and loading from node.toml + HASHFED_* env."""

from config.settings import (
    LABEL_RE,
    NODE_ID_RE,
    NODE_TOML,
    AlertSettings,
    Limits,
    NodeSettings,
    PeerSettings,
    SightingSettings,
    TrustedOwner,
    load_settings,
    read_node_toml,
    render_node_toml,
)

__all__ = [
    "LABEL_RE",
    "NODE_ID_RE",
    "NODE_TOML",
    "AlertSettings",
    "Limits",
    "NodeSettings",
    "PeerSettings",
    "SightingSettings",
    "TrustedOwner",
    "load_settings",
    "read_node_toml",
    "render_node_toml",
]
