"""The parent controller as a process: mutual TLS, who may speak for which domain, exports that
go stale, chains across domains, health and reflection."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers import ROOT
from tests.helpers.pki import make_ca, make_cert, write
from tests.unit.controller.test_parent_chain import REQ, world

from quseccontroller.parent.client import ParentClient, ParentRefused

pytestmark = pytest.mark.integration
DOMAINS = ("beijing", "trunk", "shanghai")


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    d = tmp_path_factory.mktemp("parent")
    ca = make_ca()
    write(*ca, d, "ca")
    write(*make_cert(ca, "parent", role="controller"), d, "parent")
    for dom in DOMAINS:
        write(*make_cert(ca, f"qusec-{dom}", role="controller"), d, f"qusec-{dom}")
    write(*make_cert(ca, "qusec-mars", role="controller"), d, "qusec-mars")
    write(*make_cert(ca, "qusec-beijing", role="node"), d, "node-beijing")   # right name, wrong role
    cfg = d / "parent.toml"
    cfg.write_text('[listen]\ngrpc = "127.0.0.1:0"\n[tls]\nca_cert = "ca.pem"\ncert = "parent.pem"\n'
                   'key = "parent.key"\n[export]\ninterval_s = 0.5\n'
                   + "".join(f'[[domains]]\nid = "{x}"\ncontroller = "qusec-{x}"\n' for x in DOMAINS))
    log = open(d / "parent.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "quseccontroller.parent", "--config", str(cfg),
                             "--state-dir", str(d)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    ready = d / "parent.json"
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None, (d / "parent.log").read_text()
        assert time.monotonic() < deadline, "parent did not start"
        time.sleep(0.05)
    yield d, json.loads(ready.read_text())["grpc"]
    proc.terminate()
    assert proc.wait(10) == 0
    assert not ready.exists()


def client(parent, stem: str) -> ParentClient:
    d, addr = parent
    return ParentClient(addr, d / "ca.pem", d / f"{stem}.pem", d / f"{stem}.key")


async def export_all(parent, exports=None, seq_base=None) -> None:
    seq = seq_base or time.monotonic_ns()
    for dom, ex in (exports or world()).items():
        c = client(parent, f"qusec-{dom}")
        assert await c.export(replace(ex, seq=seq)) == 0.5
        await c.close()


def test_health_and_reflection(parent) -> None:
    d, addr = parent
    creds = grpc.ssl_channel_credentials((d / "ca.pem").read_bytes(), (d / "qusec-trunk.key").read_bytes(),
                                         (d / "qusec-trunk.pem").read_bytes())
    with grpc.secure_channel(addr, creds) as ch:
        st = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="qusec.parent.v1.Parent"),
                                                  timeout=5)
        assert st.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        (resp,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=5))
        assert "qusec.parent.v1.Parent" in {s.name for s in resp.list_services_response.service}


def test_chain_across_three_domains_and_its_refusals(parent) -> None:
    async def run():
        await export_all(parent)
        bj = client(parent, "qusec-beijing")
        chain = await bj.choose(REQ)
        assert [s.domain for s in chain.segments] == ["beijing", "trunk", "shanghai"]
        assert [x.id for x in chain.crossings] == ["bj-site", "sh-site"] and chain.security == "qkd"
        with pytest.raises(ParentRefused) as info:
            await bj.choose(replace(REQ, dst_sae="sae-nobody"))
        assert info.value.code == grpc.StatusCode.NOT_FOUND and info.value.reason == "unknown_sae"
        with pytest.raises(ParentRefused) as info:
            await bj.choose(replace(REQ, dst_sae="sae-bj1"))
        assert info.value.reason == "same_domain"
        # the source domain is the caller's: trunk asking the same thing starts in trunk
        tr = client(parent, "qusec-trunk")
        chain = await tr.choose(replace(REQ, src_reach={"T-SH": REQ.src_reach["BJ-IW"]}))
        assert [s.domain for s in chain.segments] == ["trunk", "shanghai"]
        await bj.close()
        await tr.close()
    asyncio.run(run())


def test_an_export_is_the_callers_domain_and_seq_only_grows(parent) -> None:
    async def run():
        await export_all(parent)
        # beijing's QuSeC sends shanghai's export: it is taken as beijing's, so it cannot take
        # shanghai's SAE over (the parent refuses the now ambiguous SAE instead)
        bj = client(parent, "qusec-beijing")
        fake = replace(world()["shanghai"], seq=time.monotonic_ns())
        with pytest.raises(ParentRefused) as info:
            await bj.export(fake)   # its borders name beijing as the peer of beijing: refused
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        seq = time.monotonic_ns()
        await bj.export(replace(world()["beijing"], seq=seq))
        with pytest.raises(ParentRefused) as info:
            await bj.export(replace(world()["beijing"], seq=seq))   # replayed
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION and info.value.reason == "stale_seq"
        await bj.close()
    asyncio.run(run())


@pytest.mark.parametrize("stem,reason", [("qusec-mars", "unknown_controller"), ("node-beijing", "role_not_allowed")])
def test_only_configured_controllers_may_speak(parent, stem, reason) -> None:
    async def run():
        c = client(parent, stem)
        for call in (c.export(world()["beijing"]), c.choose(REQ)):
            with pytest.raises(ParentRefused) as info:
                await call
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED and info.value.reason == reason
        await c.close()
    asyncio.run(run())


def test_a_domain_that_stops_exporting_is_down(parent) -> None:
    async def run():
        await export_all(parent)
        await asyncio.sleep(1.8)   # > 3 intervals of 0.5 s
        bj = client(parent, "qusec-beijing")
        c = bj.choose(REQ)
        with pytest.raises(ParentRefused) as info:
            await c
        assert info.value.code == grpc.StatusCode.UNAVAILABLE and info.value.reason == "domain_down"
        await bj.close()
    asyncio.run(run())


def test_bad_config_names_the_entry(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[listen]\ngrpc = "127.0.0.1:0"\n[tls]\nca_cert = "nope.pem"\n[exprot]\n'
                   '[[domains]]\nid = "a"\ncontroller = "c"\n[[domains]]\nid = "b"\ncontroller = "c"\n')
    out = subprocess.run([sys.executable, "-m", "quseccontroller.parent", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30, env={**os.environ})
    assert out.returncode == 2
    assert f"{cfg}: exprot: unknown field (did you mean 'export'?)" in out.stderr
    assert f"{cfg}: [tls]: ca_cert: {tmp_path / 'nope.pem'}: no such file" in out.stderr
    assert f"{cfg}: [tls]: cert: missing" in out.stderr
    assert f"{cfg}: domains[2] (b): controller: 'c' already runs domain 'a'" in out.stderr


def test_the_parent_exits_when_its_launcher_is_killed(parent, tmp_path: Path) -> None:
    """A launcher SIGKILLed leaves no parent controller behind (``--parent-pid``, as the gateway)."""
    d, _ = parent
    cfg = tmp_path / "parent.toml"
    cfg.write_text((d / "parent.toml").read_text().replace('"ca.pem"', f'"{d}/ca.pem"')
                   .replace('"parent.pem"', f'"{d}/parent.pem"').replace('"parent.key"', f'"{d}/parent.key"'))
    # the launcher: starts the parent with its own pid, prints the parent's pid, then waits
    launcher = subprocess.Popen(
        [sys.executable, "-c",
         "import os, subprocess, sys, time\n"
         f"p = subprocess.Popen([sys.executable, '-m', 'quseccontroller.parent', '--config', {str(cfg)!r},"
         f" '--state-dir', {str(tmp_path)!r}, '--parent-pid', str(os.getpid())])\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(600)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())
    ready = tmp_path / "parent.json"
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "parent did not start"
        time.sleep(0.05)
    launcher.kill()
    launcher.wait(5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("the parent controller outlived its launcher by 10 s")
    assert not ready.exists()
