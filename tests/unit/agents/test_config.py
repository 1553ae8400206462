"""The agent config without sockets: each section typed and checked, unknown names refused, TOML round trip."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from kms_agents.config import Caps, ConfigError, RelayConfig, parse_config, to_toml


def config_data(tmp_path: Path) -> dict:
    """A minimal valid agent config (the TLS files exist, their content is not read)."""
    tls = {}
    for name in ("ca_cert", "cert", "key"):
        (tmp_path / name).write_text("-")
        tls[name] = str(tmp_path / name)
    return {"node_id": "A", "state_dir": str(tmp_path), "tls": tls}


def relay_section(tmp_path: Path, section: dict | None) -> RelayConfig:
    """The typed [relay] section of an otherwise valid agent config named agent.toml."""
    data = config_data(tmp_path)
    if section is not None:
        data["relay"] = section
    return parse_config(data, "agent.toml").relay


def test_relay_settings_reject_unknown_fields(tmp_path: Path) -> None:
    assert relay_section(tmp_path, None) == RelayConfig()
    assert relay_section(tmp_path, {"prerelay": True}) == RelayConfig(prerelay=True)
    with pytest.raises(ConfigError, match=r"agent.toml: \[relay\]: unknown field 'prerelai'"):
        relay_section(tmp_path, {"prerelai": True})
    with pytest.raises(ConfigError, match=r"\[relay\]: hop_timeout_s: expected a number, got 'soon'"):
        relay_section(tmp_path, {"hop_timeout_s": "soon"})
    with pytest.raises(ConfigError, match=r"\[relay\]: hop_timeout_s: must be positive, got 0"):
        relay_section(tmp_path, {"hop_timeout_s": 0})
    with pytest.raises(ConfigError, match=r"\[relay\]: prerelay: expected true or false, got 1"):
        relay_section(tmp_path, {"prerelay": 1})
    with pytest.raises(ConfigError, match=r"\[relay\]: max_parallel: expected an integer, got 2.5"):
        relay_section(tmp_path, {"max_parallel": 2.5})
    relay = relay_section(tmp_path, {"hop_timeout_s": 3})
    assert relay == RelayConfig(hop_timeout_s=3.0) and isinstance(relay.hop_timeout_s, float)


def test_relay_section_round_trips_through_toml(tmp_path: Path) -> None:
    relay = RelayConfig(hop_timeout_s=3.5, prerelay=True, prerelay_max_keys=16, advertise_addr="10.0.0.9:7")
    cfg = parse_config(config_data(tmp_path), "agent.toml")
    cfg.relay = relay
    assert parse_config(tomllib.loads(to_toml(cfg)), "agent.toml").relay == relay


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "agent.toml")
    return e.value.problems


KNOWN = "known: caps, etsi020, graph, limits, links, listen, node_id, peers, pqc, qusec, relay, saes, state_dir, tls, trust"


def test_unknown_top_level_names_are_refused(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    assert problems({**data, "limts": {"key_size": 128}}) == [
        f"agent.toml: top level: unknown table 'limts' (did you mean 'limits'?); {KNOWN}"]
    assert problems({**data, "link": [{"id": "A-B"}]}) == [
        f"agent.toml: top level: unknown table 'link' (did you mean 'links'?); {KNOWN}"]
    assert problems({**data, "trsut": 2}) == [
        f"agent.toml: top level: unknown key 'trsut' (did you mean 'trust'?); {KNOWN}"]
    assert problems({**data, "vendor": {"x": 1}}) == [f"agent.toml: top level: unknown table 'vendor'; {KNOWN}"]
    # reported with the other problems of the file, not instead of them
    assert problems({**data, "limits": {"foo": 1}, "limts": {}}) == [
        "agent.toml: [limits]: unknown field 'foo' (known: key_size, max_key_count, max_key_per_request, "
        "max_key_size, max_sae_id_count, min_key_size)",
        f"agent.toml: top level: unknown table 'limts' (did you mean 'limits'?); {KNOWN}"]


def test_every_section_round_trips_through_toml(tmp_path: Path) -> None:
    cfg = parse_config({**config_data(tmp_path), "trust": 2, "saes": {"sae-a": "A"}, "graph": {"A": []},
                        "listen": {"relay": "127.0.0.1:7000"}, "qusec": {"addr": "127.0.0.1:50051"},
                        "limits": {"key_size": 128}, "peers": {"B": {"relay_addr": "10.0.0.2:7000"}}},
                       "agent.toml")
    assert parse_config(tomllib.loads(to_toml(cfg)), "agent.toml") == cfg


def test_caps_are_typed_positive_and_round_trip(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    assert parse_config(data, "agent.toml").caps == Caps()
    cfg = parse_config({**data, "caps": {"etsi014_connections": 8, "etsi004_join_s": 5},
                        "listen": {"metrics": "127.0.0.1:9400"}}, "agent.toml")
    assert cfg.caps == Caps(etsi014_connections=8, etsi004_join_s=5.0) and cfg.listen_metrics == "127.0.0.1:9400"
    assert parse_config(tomllib.loads(to_toml(cfg)), "agent.toml") == cfg
    assert problems({**data, "caps": {"etsi014_connections": 0, "etsi004_calls": 3}}) == [
        "agent.toml: [caps]: unknown field 'etsi004_calls' (known: etsi004_calls_per_sae, etsi004_idle_s, "
        "etsi004_join_s, etsi004_streams_per_sae, etsi014_connections, etsi014_connections_per_sae, "
        "etsi014_handshake_s, etsi014_idle_s, etsi014_request_s)",
        "agent.toml: [caps]: etsi014_connections: must be positive, got 0"]


def test_pqc_links_are_checked_by_entry_and_round_trip(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    ca = tmp_path / "peer-ca.pem"
    ca.write_text("-")
    data["pqc"] = {"listen": "127.0.0.1:0",
                   "links": [{"id": "wan", "peer": "SH3", "addr": "10.0.0.2:9000", "ca_cert": str(ca)}]}
    cfg = parse_config(data, "agent.toml")
    assert [(lk.id, lk.peer, lk.addr) for lk in cfg.pqc.links] == [("wan", "SH3", "10.0.0.2:9000")]
    assert parse_config(tomllib.loads(to_toml(cfg)), "agent.toml").pqc == cfg.pqc
    bad = config_data(tmp_path)
    bad["pqc"] = {"pending_s": 0, "links": [
        {"id": "wan", "peer": "SH3", "addr": "nowhere", "ca_cert": str(tmp_path / "missing.pem")},
        {"id": "wan", "peer": "SH4", "addr": "10.0.0.3:1", "ca_cert": str(ca), "colour": "red"},
        {"id": "lan", "addr": "10.0.0.3:1", "ca_cert": str(ca)}]}
    got = problems(bad)
    assert "agent.toml: [pqc]: pending_s: must be positive, got 0.0" in got
    assert any(p.startswith("agent.toml: [pqc]: links[0] (wan): addr: expected \"host:port\"") for p in got)
    assert "agent.toml: [pqc]: links[0] (wan): ca_cert: file not found: " + str(tmp_path / "missing.pem") in got
    assert any(p.startswith("agent.toml: [pqc]: links[1] (wan): unknown field 'colour'") for p in got)
    assert "agent.toml: [pqc]: links[2] (lan): missing required field 'peer'" in got
    no_links = config_data(tmp_path)
    no_links["pqc"] = {}
    assert problems(no_links) == ["agent.toml: [pqc]: links: expected [[pqc.links]] tables"]
