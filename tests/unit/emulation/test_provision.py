"""Agent configs for a topology (round trip, clear errors) and the PKI (names, usages, chain)."""
from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kms_agents.config import ConfigError, load_config, write_config
from mininet_topos.provision.agents import configs_for_topology
from mininet_topos.provision.pki import Pki, build_pki
from mininet_topos.model import Node, QkdLink, Sae, Topology


def topo() -> Topology:
    return Topology("t3", {n: Node(n) for n in "ABC"},
                    [QkdLink("A-B", "A", "B", 1e6), QkdLink("A-B#2", "A", "B", 5e5), QkdLink("B-C", "B", "C", 1e3)],
                    {"sae-a": Sae("sae-a", "A"), "sae-c": Sae("sae-c", "C")})


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return build_pki(topo(), tmp_path_factory.mktemp("pki"), {"B": ["10.0.0.2"]})


def cert(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def test_pki_names_usages_and_chain(pki: Pki) -> None:
    ca = cert(pki.ca_cert)
    b = cert(pki.nodes["B"].cert)
    assert b.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "B"
    sans = b.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # a node's certificate names the addresses it really listens on, and nothing else
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.2")]
    assert sans.get_values_for_type(x509.DNSName) == ["B"]
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:qusec:node:B"]
    a = cert(pki.nodes["A"].cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert a.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]   # loopback node
    b.verify_directly_issued_by(ca)
    sae = cert(pki.saes["sae-c"].cert)
    assert sae.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sae-c"
    eku = sae.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]      # an SAE cannot serve as a KME
    sae_sans = sae.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(sae_sans) == [x509.UniformResourceIdentifier("urn:qusec:sae:sae-c")]
    roles = {name: cert(pair.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
             .value.get_values_for_type(x509.UniformResourceIdentifier)
             for name, pair in (("qusec", pki.qusec), ("operator", pki.operator), ("ovs", pki.switch))}
    assert roles == {"qusec": ["urn:qusec:controller:qusec"], "operator": ["urn:qusec:operator:operator"],
                     "ovs": ["urn:qusec:switch:ovs"]}
    for pair in (pki.operator, pki.switch):
        assert list(cert(pair.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) \
            == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert stat.S_IMODE(Path(pki.saes["sae-c"].key).stat().st_mode) == 0o600
    assert Pki.load(pki.out_dir).nodes["C"] == pki.nodes["C"]


def test_configs_for_topology_round_trip(pki: Pki, tmp_path: Path) -> None:
    cfgs = configs_for_topology(topo(), pki, tmp_path, {"B": "10.0.0.2"}, qusec_addr="127.0.0.1:50051")
    a, b = cfgs["A"], cfgs["B"]
    assert [lk.id for lk in a.links] == ["A-B", "A-B#2"] and a.links[0].peer == "B"
    assert b.listen_etsi014 == "10.0.0.2:0" and a.qusec_addr == "127.0.0.1:50051"
    assert a.peers["B"].agent_json == str(tmp_path.resolve() / "B" / "agent.json")
    # both ends of a link share one secret file and epoch (the simulated quantum channel)
    assert a.links[0].secret_file == b.links[0].secret_file and a.links[0].epoch == b.links[0].epoch
    assert stat.S_IMODE(Path(a.links[0].secret_file).stat().st_mode) == 0o600
    assert a.saes == {"sae-a": "A", "sae-c": "C"} and a.local_saes() == ["sae-a"]
    again = load_config(write_config(b, tmp_path / "b.toml"))
    assert (again.links, again.peers, again.saes, again.limits, again.tls) == (b.links, b.peers, b.saes, b.limits, b.tls)
    assert again.graph == b.graph == {"A": ["B"], "B": ["A", "C"], "C": ["B"]}
    fixed = configs_for_topology(topo(), pki, tmp_path, ports={"relay": 7000})
    assert fixed["A"].peers["B"].relay_addr == "127.0.0.1:7000"


def test_config_errors_name_file_and_entry(pki: Pki, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('node_id = "A"\n[tls]\nca_cert = "/nope.pem"\ncert = "x"\n'
                   '[listen]\netsi014 = "nohost"\n[limits]\nkey_size = 100\nfoo = 1\n'
                   '[[links]]\nid = "L"\npeer = "B"\nrate_bps = -1\nkind = "quantum"\n')
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    text = "\n".join(e.value.problems)
    for expected in ("state_dir", "[tls]: missing required field 'key'", "[listen]: etsi014",
                     "[limits]: unknown field 'foo'", "links[0] (L): kind", "links[0] (L): rate_bps"):
        assert expected in text, expected
    assert all(p.startswith(str(bad)) for p in e.value.problems)
    with pytest.raises(ConfigError, match="not valid TOML"):
        bad.write_text("node_id = ")
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_openapi_document_matches_the_server() -> None:
    import re

    from kms_agents import etsi014
    doc = json.loads((Path(etsi014.__file__).parent / "openapi" / "etsi014.json").read_text())
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert paths == {"/api/v1/keys/{slave_SAE_ID}/status", "/api/v1/keys/{slave_SAE_ID}/enc_keys",
                     "/api/v1/keys/{master_SAE_ID}/dec_keys"}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert {"200", "400", "401", "503"} <= set(op["responses"]), path
            assert "content" not in op["responses"]["401"]          # 401 has no body
    schemas = doc["components"]["schemas"]
    from kms_agents.keyrequest import EXTENSIONS
    assert all(re.fullmatch(r"qusec_\w+", k) for k in EXTENSIONS)
    assert set(schemas["KeyRequest"]["properties"]) == {"number", "size", "additional_slave_SAE_IDs",
                                                         "extension_mandatory", "extension_optional"}


def test_qkdnet_pki_and_kms_agent_cli_errors(tmp_path: Path, capsys) -> None:
    from kms_agents import agent
    from mininet_topos.cli import main
    assert main(["pki", "linear6", "--out", str(tmp_path / "pki"), "--address", "A=10.0.0.1"]) == 0
    done = Pki.load(tmp_path / "pki")
    assert set(done.nodes) == set("ABCDEF") and Path(done.saes["sae-a"].cert).is_file()
    sans = cert(done.nodes["A"].cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert main(["pki", "linear6", "--out", str(tmp_path / "p2"), "--address", "nonsense"]) == 2
    assert main(["pki", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "p3")]) == 1
    bad = tmp_path / "agent.toml"
    bad.write_text('node_id = "A"\n')
    assert agent.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: state_dir" in err and f"{bad}: [tls]" in err


def test_operator_certificates_are_added_to_an_existing_pki(tmp_path: Path) -> None:
    from mininet_topos.provision.pki import issue_operator
    p = build_pki(topo(), tmp_path / "pki")
    pair = issue_operator(Pki.load(p.out_dir), "alice")
    c = cert(pair.cert)
    c.verify_directly_issued_by(cert(p.ca_cert))
    assert c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier) == ["urn:qusec:operator:alice"]
    assert Pki.load(p.out_dir).operators["alice"] == pair
    with pytest.raises(ValueError, match="already has a certificate"):
        issue_operator(Pki.load(p.out_dir), "alice")
