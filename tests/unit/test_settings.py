"""Settings: node.toml, HASHFED_* overrides, and refusals that name key and file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import NODE_TOML, Limits, NodeSettings, load_settings, read_node_toml, render_node_toml
from crypto.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HASHFED_* variable from the developer's shell leaks into these tests."""
    for key in list(os.environ):
        if key.startswith("HASHFED_"):
            monkeypatch.delenv(key)


def _data(tmp_path: Path, toml: str) -> Path:
    (tmp_path / NODE_TOML).write_text(toml, encoding="utf-8")
    return tmp_path


def test_rendered_node_toml_loads_with_defaults(tmp_path: Path) -> None:
    data = _data(tmp_path, render_node_toml("au-argos", port=9443))
    s = load_settings(data)
    assert (s.node_id, s.role, s.port, s.host) == ("au-argos", "agency", 9443, "127.0.0.1")
    assert s.limits == Limits()
    assert s.limits.max_batch == 10_000
    assert s.peers == []
    assert s.data_dir == data
    assert s.effective_database_url == f"sqlite:///{(data / 'hashfed.db').resolve()}"
    assert s.effective_public_url == "https://127.0.0.1:9443"
    assert s.path("keys/signing.key") == data / "keys" / "signing.key"
    assert s.path("/etc/x") == Path("/etc/x")


def test_toml_values_are_read(tmp_path: Path) -> None:
    data = _data(
        tmp_path,
        'node_id = "nl-politie"\nrole = "partner"\nport = 10443\n'
        'database_url = "postgresql+psycopg://u@h/db"\n'
        "[limits]\nmax_batch = 123\nmax_page_entries = 7\n"
        '[[peers]]\nnode_id = "au-argos"\nurl = "https://argos.example:8443"\n'
        'labels = ["baseline"]\n',
    )
    s = load_settings(data)
    assert (s.node_id, s.role, s.port) == ("nl-politie", "partner", 10443)
    assert s.effective_database_url == "postgresql+psycopg://u@h/db"
    assert (s.limits.max_batch, s.limits.max_page_entries) == (123, 7)
    assert s.limits.max_body_bytes == Limits().max_body_bytes  # untouched defaults kept
    [peer] = s.peers
    assert (peer.node_id, peer.labels, peer.subscribe) == ("au-argos", ["baseline"], ["*"])


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(tmp_path, render_node_toml("au-argos"))
    monkeypatch.setenv("HASHFED_PORT", "9999")
    monkeypatch.setenv("HASHFED_NODE_ID", "au-other")
    monkeypatch.setenv("HASHFED_DATABASE_URL", "sqlite:////tmp/elsewhere.db")
    s = load_settings(data)
    assert (s.port, s.node_id) == (9999, "au-other")
    assert s.effective_database_url == "sqlite:////tmp/elsewhere.db"


def test_nested_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(tmp_path, render_node_toml("au-argos") + "max_page_entries = 77\n")
    monkeypatch.setenv("HASHFED_LIMITS__MAX_BATCH", "500")
    s = load_settings(data)
    assert s.limits.max_batch == 500
    # The rest of the [limits] table from node.toml survives the override.
    assert s.limits.max_page_entries == 77


def test_explicit_overrides_beat_toml(tmp_path: Path) -> None:
    data = _data(tmp_path, render_node_toml("au-argos"))
    assert load_settings(data, port=1234).port == 1234


def test_missing_node_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert str(tmp_path / NODE_TOML) in str(info.value)
    with pytest.raises(ConfigError):
        read_node_toml(tmp_path / "nowhere")


def test_malformed_toml(tmp_path: Path) -> None:
    data = _data(tmp_path, 'node_id = "au-argos\nport = \n')
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert NODE_TOML in str(info.value)


@pytest.mark.parametrize(
    ("toml_tail", "key"),
    [
        ('port = "https"\n', "port"),
        ("port = 70000\n", "port"),
        ('role = "god"\n', "role"),
        ("heartbeat_seconds = 1\n", "heartbeat_seconds"),
        ("pdq_default_max_distance = 300\n", "pdq_default_max_distance"),
        ("unknown_key = 1\n", "unknown_key"),
        ("[limits]\nmax_batch = 0\n", "limits.max_batch"),
        ("[limits]\nmax_batch = 1000000\n", "limits.max_batch"),
        ("[limits]\nnot_a_limit = 1\n", "limits.not_a_limit"),
        ('[[peers]]\nnode_id = "x"\n', "peers.0.url"),
        (
            '[[peers]]\nnode_id = "x"\nurl = "https://x"\nfingerprnt = "sha256:00"\n',
            "peers.0.fingerprnt",
        ),
    ],
)
def test_invalid_values_name_the_key_and_the_file(tmp_path: Path, toml_tail: str, key: str) -> None:
    data = _data(tmp_path, 'node_id = "au-argos"\n' + toml_tail)
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert key in str(info.value)
    assert str(data / NODE_TOML) in str(info.value)


@pytest.mark.parametrize(
    "node_id", ["AU-argos", "-argos", "au argos", "au/argos", "x" * 64, "", "au-argos\n"]
)
def test_bad_node_ids_are_refused(tmp_path: Path, node_id: str) -> None:
    data = _data(tmp_path, f"node_id = {node_id!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert "node_id" in str(info.value)


def test_missing_node_id(tmp_path: Path) -> None:
    data = _data(tmp_path, "port = 8443\n")
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert "node_id" in str(info.value)


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("HASHFED_PORT", "not-a-port", "port"),
        ("HASHFED_LIMITS__MAX_BATCH", "0", "max_batch"),
        ("HASHFED_NODE_ID", "Bad Id", "node_id"),
    ],
)
def test_invalid_environment_values_are_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, key: str
) -> None:
    data = _data(tmp_path, render_node_toml("au-argos"))
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert key in str(info.value)


def test_proxy_header_is_refused_off_loopback(tmp_path: Path) -> None:
    data = _data(
        tmp_path,
        'node_id = "au-argos"\nhost = "0.0.0.0"\ntrusted_proxy_cert_header = "X-Client-Cert"\n',
    )
    with pytest.raises(ConfigError):
        load_settings(data)
    ok = _data(
        tmp_path,
        'node_id = "au-argos"\ntrusted_proxy_cert_header = "X-Client-Cert"\n'
        f'trusted_proxy_fingerprints = ["sha256:{"ab" * 32}"]\n',
    )
    assert load_settings(ok).trusted_proxy_cert_header == "X-Client-Cert"


def test_proxy_header_without_a_pinned_proxy_certificate_is_refused(tmp_path: Path) -> None:
    data = _data(tmp_path, 'node_id = "au-argos"\ntrusted_proxy_cert_header = "X-Client-Cert"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert "trusted_proxy_fingerprints" in str(info.value)


def test_settings_are_not_built_at_import_time() -> None:
    import config.settings as module

    assert not [v for v in vars(module).values() if isinstance(v, NodeSettings)]


@pytest.mark.parametrize(
    "table",
    [
        '[[trusted_owners]]\nnode_id = "agency-c"\nsigning_key = ["x"]\n',  # misspelt
        '[[peers]]\nnode_id = "b"\nurl = "https://b:1"\nfingerprnt = "sha256:00"\n',
        "[limits]\nmax_batchh = 5\n",
    ],
)
def test_an_unknown_key_in_any_table_is_refused(tmp_path: Path, table: str) -> None:
    data = _data(tmp_path, render_node_toml("au-argos").split("\n[limits]")[0] + "\n" + table)
    with pytest.raises(ConfigError):
        load_settings(data)
