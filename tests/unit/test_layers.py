"""The packages stay in their layers (tests/helpers/layers.py states the rules) and nothing in
the repository points at a file outside it."""
from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.helpers import ROOT
from tests.helpers.layers import check


def test_the_repository_keeps_its_layers() -> None:
    problems = check(ROOT)
    assert not problems, "layering problems:\n" + "\n".join(map(str, problems))


def tree(root: Path, files: dict[str, str]) -> Path:
    for name in ("quseccontroller", "kms_agents", "mininet_topos"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").touch()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_an_upward_import_fails_naming_file_and_line(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "quseccontroller/core.py": '"""core"""\nimport json\n\nfrom mininet_topos.model import Topology\n',
        "mininet_topos/model.py": "Topology = object\n",
        "kms_agents/service.py": "def f():\n    from mininet_topos import model\n",
    })
    found = [str(p) for p in check(root)]
    assert found == ["kms_agents/service.py:2: the agent imports mininet_topos.model (it never imports "
                     "mininet_topos)",
                     "quseccontroller/core.py:4: the controller imports mininet_topos.model (it imports "
                     "neither sibling)"], found


def test_the_agent_touches_the_controller_in_its_control_client_only(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "quseccontroller/proto/__init__.py": "",
        "quseccontroller/proto/control_pb2.py": "",
        "quseccontroller/core.py": "",
        "kms_agents/control_client.py": "from quseccontroller.proto import control_pb2\n"
                                        "from quseccontroller import core\n",
        "kms_agents/relay.py": "from quseccontroller.proto import control_pb2\n",
    })
    found = [str(p) for p in check(root)]
    assert found == ["kms_agents/control_client.py:2: the agent's control client imports quseccontroller.core "
                     "(only the control-stream protocol, quseccontroller.proto)",
                     "kms_agents/relay.py:1: the agent imports quseccontroller.proto outside its control "
                     "client (kms_agents.control_client)"], found


def test_a_cycle_fails_even_through_type_checking_imports(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "quseccontroller/paths.py": "from quseccontroller.arcs import ArcIndex\n",
        "quseccontroller/arcs.py": """\
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from quseccontroller.paths import Constraints
            """,
        "mininet_topos/bench_x.py": "",
        "kms_agents/bench.py": "",
    })
    found = [str(p) for p in check(root)]
    assert found == ["kms_agents/bench.py:1: a benchmark inside a product package (benchmarks live in "
                     "mininet_topos/bench)",
                     "quseccontroller/arcs.py:3: import cycle: quseccontroller.arcs -> quseccontroller.paths "
                     "-> quseccontroller.arcs"], found


def test_nothing_refers_to_a_file_outside_the_repository() -> None:
    names = "|".join(n + r"\.md" for n in ("DESIGN", "STANDARDS", "STYLE"))
    out = subprocess.run(["git", "grep", "-n", "-I", "-E", rf"\b({names})\b", "--", ".",
                          ":!tests/unit/test_layers.py"], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == "", "references to files that are not in the repository:\n" + out.stdout
