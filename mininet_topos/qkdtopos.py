"""Small parametrised QKD topologies for Mininet's ``mn --custom``.

    mn --custom mininet_topos/qkdtopos.py --topo qkdlinear,4 \\
       --controller remote --switch ovs,protocols=OpenFlow13

On machines without the OVS kernel module use ``--switch ovs,datapath=user,protocols=OpenFlow13``;
start QuSeC first (``osken-manager --observe-links quseccontroller.app``). Topologies:
``qkdlinear,N``, ``qkdring,N``, ``qkdgrid,ROWS,COLS``, ``qkdmesh,N,SEED`` and ``qkdfile,SPEC``
(any topology file or shipped name, e.g. ``qkdfile,metro8``). Each node is a switch ``qsI``
with its vKMS host; SAE hosts sit on the end nodes. ``--controller qusec[,port=PORT]`` is the
remote controller without Mininet's telnet probe (which can crash on QuSeC's binary HELLO);
``--test qkdping`` switches TX checksum offload off in the hosts (the userspace datapath needs
that for TCP) and pings all pairs until none is lost. ``mn`` execs this file, so it has no
relative imports; run it directly to print a topology's plan.
"""
import os
import sys


def _import_package():
    """Import the qusec package; when ``mn`` runs outside the virtualenv, from this checkout."""
    try:
        import mininet_topos.launch.topos  # noqa: F401
    except ImportError:
        for arg in sys.argv:
            if arg.endswith("qkdtopos.py") and os.path.isfile(arg):
                sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(arg))))
                break
        import mininet_topos.launch.topos  # noqa: F401


_import_package()

from mininet_topos.model import Node, QkdLink, Sae, Topology  # noqa: E402
from mininet_topos.launch.plan import plan  # noqa: E402
from mininet_topos.launch.topos import QkdTopo, QuSeCRemote, tx_checksum_off  # noqa: E402

LINK_RATE_BPS = 1e6   # parametrised topologies have no fibre lengths: 1 Mb/s per link


def _topology(name, node_ids, edges, sae_nodes):
    nodes = {n: Node(n) for n in node_ids}
    links = [QkdLink(f"{a}-{b}", a, b, LINK_RATE_BPS) for a, b in edges]
    saes = {f"sae-{n.lower()}": Sae(f"sae-{n.lower()}", n) for n in sae_nodes}
    return Topology(name, nodes, links, saes, description=f"parametrised {name}")


def linear(n=4):
    """N1 - N2 - ... - Nn; SAEs on both ends."""
    if n < 2:
        raise ValueError(f"qkdlinear needs at least 2 nodes, got {n}")
    ids = [f"N{i}" for i in range(1, n + 1)]
    return _topology(f"linear{n}", ids, list(zip(ids, ids[1:])), [ids[0], ids[-1]])


def ring(n=6):
    """A ring of n nodes; SAEs on N1 and the node opposite."""
    if n < 3:
        raise ValueError(f"qkdring needs at least 3 nodes, got {n}")
    ids = [f"N{i}" for i in range(1, n + 1)]
    return _topology(f"ring{n}", ids, list(zip(ids, ids[1:] + ids[:1])), [ids[0], ids[n // 2]])


def grid(rows=3, cols=3):
    """rows x cols grid (node GRC); SAEs on opposite corners."""
    if rows < 1 or cols < 1 or rows * cols < 2:
        raise ValueError(f"qkdgrid needs at least 2 nodes, got {rows}x{cols}")
    ids = [f"G{r}{c}" if rows < 10 and cols < 10 else f"G{r}_{c}"
           for r in range(1, rows + 1) for c in range(1, cols + 1)]
    at = {(r, c): ids[(r - 1) * cols + (c - 1)] for r in range(1, rows + 1) for c in range(1, cols + 1)}
    edges = [(at[r, c], at[r, c + 1]) for r in range(1, rows + 1) for c in range(1, cols)]
    edges += [(at[r, c], at[r + 1, c]) for r in range(1, rows) for c in range(1, cols + 1)]
    return _topology(f"grid{rows}x{cols}", ids, edges, [ids[0], ids[-1]])


class QkdLinearTopo(QkdTopo):
    """``qkdlinear,N``: a chain of N trusted nodes."""

    def build(self, n=4, mgmt=False):
        super().build(plan(linear(int(n))), mgmt=mgmt)


class QkdRingTopo(QkdTopo):
    """``qkdring,N``: N trusted nodes in a ring (a loop: needs an OpenFlow controller)."""

    def build(self, n=6, mgmt=False):
        super().build(plan(ring(int(n))), mgmt=mgmt)


class QkdGridTopo(QkdTopo):
    """``qkdgrid,ROWS,COLS``: a grid of trusted nodes."""

    def build(self, rows=3, cols=3, mgmt=False):
        super().build(plan(grid(int(rows), int(cols))), mgmt=mgmt)


class QkdMeshTopo(QkdTopo):
    """``qkdmesh,N,SEED``: the seeded synthetic mesh (mininet_topos.synthetic)."""

    def build(self, n=16, seed=1, mgmt=False):
        from mininet_topos.synthetic import mesh
        super().build(plan(mesh(int(n), int(seed))), mgmt=mgmt)


class QkdFileTopo(QkdTopo):
    """``qkdfile,SPEC``: a topology file or shipped name (``qkdfile,metro8``)."""

    def build(self, spec="metro8", mgmt=False):
        from mininet_topos.topology import load
        super().build(plan(load(str(spec))), mgmt=mgmt)


def qkd_ping(net, timeout=60):
    """``--test qkdping``: TX checksum offload off in the hosts (so TCP works on the userspace
    datapath), every host announces itself with one ARP (QuSeC forwards only to hosts it has
    seen), then ping all pairs until none is lost."""
    import subprocess
    import time
    tx_checksum_off(net.hosts)
    for p in [h.popen(["ping", "-c", "1", "-W", "1", "10.0.255.254"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL) for h in net.hosts]:
        p.wait()
    t0 = time.time()
    loss = 100.0
    while time.time() - t0 < timeout:
        loss = net.pingAll(timeout=1)
        if loss == 0:
            break
        time.sleep(1)
    print(f"qkdping: {loss:.0f}% dropped after {time.time() - t0:.1f} s")


topos = {
    "qkdlinear": QkdLinearTopo,
    "qkdring": QkdRingTopo,
    "qkdgrid": QkdGridTopo,
    "qkdmesh": QkdMeshTopo,
    "qkdfile": QkdFileTopo,
}
controllers = {"qusec": QuSeCRemote}     # --controller qusec[,ip=IP,port=PORT]
tests = {"qkdping": qkd_ping}           # --test qkdping


if __name__ == "__main__":
    # Script use: print what a topology becomes, e.g. `python mininet_topos/qkdtopos.py qkdring 6`.
    name, params = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("qkdlinear", [])
    if name not in topos:
        sys.exit(f"unknown topology {name!r}; one of {', '.join(topos)}")
    t = topos[name](*params)
    p = t.qkd_plan
    print(f"{p.topology}: switches {' '.join(s.name for s in p.switches)}")
    for h in p.node_hosts:
        print(f"  node {h.node}: host {h.name} {h.ip} on {h.switch}")
    for h in p.sae_hosts:
        print(f"  SAE {h.sae}: host {h.name} {h.ip} on {h.switch}")
    print("  links: " + ", ".join(f"{l.a}-{l.b}" for l in p.links))
