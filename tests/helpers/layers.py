"""The layering rules of the three packages, checked from the source (ast, no imports run).

* ``quseccontroller`` imports neither ``kms_agents`` nor ``mininet_topos``;
* ``kms_agents`` imports nothing of ``mininet_topos``, and of ``quseccontroller`` only the
  control-stream protocol (``quseccontroller.proto``), in exactly one module (its control client);
* ``mininet_topos`` (provisioning, launchers, CLI, emulation, benchmarks) may import both;
* no import cycle between modules of any package (imports under ``if TYPE_CHECKING:`` and
  inside functions count: they are still dependencies a reader must follow);
* benchmarks live in ``mininet_topos/bench``, not in the product packages.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("quseccontroller", "kms_agents", "mininet_topos")
AGENT_CONTROL_CLIENT = "kms_agents.control_client"


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages (generated code aside)."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            if "_pb2" in f.name:
                continue
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imports(root: Path, mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module, line) for every import of a module of ours."""
    edges = []
    for me, f in mods.items():
        tree = ast.parse(f.read_text(), str(f))
        package = me if f.name == "__init__.py" else me.rpartition(".")[0]
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            targets = set()
            for name in names:
                target = name
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != me:
                    targets.add(target)
            # ``from pkg import mod`` names pkg and pkg.mod: the module is what is imported
            for t in targets:
                if not any(o.startswith(t + ".") for o in targets):
                    edges.append((me, t, node.lineno))
    return sorted(set(edges))


def cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b, _ in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def check(root: Path) -> list[Problem]:
    """Every layering problem under ``root`` (a checkout), each naming a file and line."""
    mods = modules(root)
    edges = imports(root, mods)
    rel = {m: str(f.relative_to(root)) for m, f in mods.items()}
    problems = []
    agent_to_controller: dict[str, int] = {}
    for a, b, line in edges:
        ta, tb = a.split(".")[0], b.split(".")[0]
        if ta == "quseccontroller" and tb in ("kms_agents", "mininet_topos"):
            problems.append(Problem(rel[a], line, f"the controller imports {b} (it imports neither sibling)"))
        elif ta == "kms_agents" and tb == "mininet_topos":
            problems.append(Problem(rel[a], line, f"the agent imports {b} (it never imports mininet_topos)"))
        elif ta == "kms_agents" and tb == "quseccontroller":
            if a != AGENT_CONTROL_CLIENT:
                problems.append(Problem(rel[a], line, f"the agent imports {b} outside its control client "
                                                      f"({AGENT_CONTROL_CLIENT})"))
            elif not b.startswith("quseccontroller.proto"):
                problems.append(Problem(rel[a], line, f"the agent's control client imports {b} (only the "
                                                      "control-stream protocol, quseccontroller.proto)"))
    where = {(a, b): line for a, b, line in edges}
    for comp in cycles(edges):
        first = comp[0]
        nxt = next(b for (a, b) in sorted(where) if a == first and b in comp)
        problems.append(Problem(rel[first], where[(first, nxt)],
                                "import cycle: " + " -> ".join(comp + [comp[0]])))
    for m, f in mods.items():
        if m.split(".")[0] != "mininet_topos" and f.name.startswith("bench"):
            problems.append(Problem(rel[m], 1, "a benchmark inside a product package "
                                               "(benchmarks live in mininet_topos/bench)"))
    return sorted(problems)
