"""An external ETSI 014 KMS (our own link KMS, run as separate processes) as a link's key source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kms_agents.client import Etsi014Error
from mininet_topos.launch.local import LocalNetwork
from mininet_topos.model import Node, QkdLink, Sae, Topology
from tests.helpers.kmsnet import Saes

pytestmark = pytest.mark.integration


def test_vendor_kms_over_etsi014_is_a_key_source(tmp_path: Path) -> None:
    # The "vendor": two KMEs joined by their own QKD link; our nodes A and B are its SAEs.
    vendor_topo = Topology("vendor", {"VA": Node("VA"), "VB": Node("VB")},
                           [QkdLink("VA-VB", "VA", "VB", 1e6)], {"A": Sae("A", "VA"), "B": Sae("B", "VB")})
    with LocalNetwork(vendor_topo, tmp_path / "vendor", with_qusec=False) as vendor:
        vdoc = json.loads(vendor.network_json.read_text())
        urls = ",".join(vdoc["nodes"][n]["etsi014_url"] for n in ("VA", "VB"))

        def use_vendor_certs(node: str, cfg) -> None:
            for link in cfg.links:
                link.kms_ca_cert = vdoc["ca_cert"]
                link.kms_cert, link.kms_key = vdoc["saes"][node]["cert"], vdoc["saes"][node]["key"]

        topo = Topology("kmsvendor", {"A": Node("A"), "B": Node("B")},
                        [QkdLink("A-B", "A", "B", 1e6, kms="etsi014", kms_url=urls)],
                        {"sae-a1": Sae("sae-a1", "A"), "sae-b1": Sae("sae-b1", "B")})
        with LocalNetwork(topo, tmp_path / "net", with_qusec=False, config_hook=use_vendor_certs) as net:
            assert net.agents["A"]["links"][0]["kind"] == "etsi014"
            saes = Saes(json.loads(net.network_json.read_text()))
            st = saes.kme("sae-a1").status("sae-b1")
            assert 0 < st["stored_key_count"] <= st["max_key_count"]
            keys = saes.kme("sae-a1").enc_keys("sae-b1", number=3, size=512)
            got = saes.kme("sae-b1").dec_keys("sae-a1", [k.key_id for k in keys])
            assert [k.key for k in got] == [k.key for k in keys] and all(len(k.key) == 64 for k in keys)
            back = saes.kme("sae-b1").enc_keys("sae-a1")
            assert saes.kme("sae-a1").dec_keys("sae-b1", [back[0].key_id])[0].key == back[0].key

            # vendor KME of A down: a clear 503, and the agent keeps serving
            vendor.procs["VA"].kill()
            vendor.procs["VA"].wait()
            with pytest.raises(Etsi014Error) as e:
                saes.kme("sae-a1").enc_keys("sae-b1")
            assert e.value.status == 503 and "unavailable" in e.value.body["message"]
            with pytest.raises(Etsi014Error) as e:
                saes.kme("sae-a1").status("sae-b1")
            assert e.value.status == 503
            assert saes.kme("sae-b1").status("sae-a1")["source_KME_ID"] == "B"   # B's vendor KME is fine
            saes.close()
