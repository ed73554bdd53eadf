"""Fleet files: the demo file parses; every kind of bad file fails saying where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from maxtune.agent.fleetfile import FleetError, load

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "fleets" / "demo.yaml"

MINIMAL = """\
name: t
gpuModels:
  h100:
    product: NVIDIA H100 80GB HBM3
    memoryMib: 81559
    computeCapability: "9.0"
    smCount: 132
nodes:
  - name: a
    gpus: [{model: h100}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_demo_fleet_parses_with_replicas_and_stable_uuids() -> None:
    fleet = load(DEMO)
    assert {"gpu-h100-0", "gpu-h100-1", "gpu-mig-0", "gpu-mixed-0"} <= set(fleet.nodes)
    h100 = fleet.node("gpu-h100-0")
    assert len(h100) == 8
    assert len({g.device.uuid for g in h100}) == 8
    # UUIDs are stable across loads and differ between nodes.
    assert [g.device.uuid for g in load(DEMO).node("gpu-h100-0")] == [g.device.uuid for g in h100]
    assert not {g.device.uuid for g in h100} & {g.device.uuid for g in fleet.node("gpu-h100-1")}


def test_minimal_fleet(tmp_path: Path) -> None:
    fleet = load(write(tmp_path, MINIMAL))
    (gpu,) = fleet.node("a")
    assert gpu.device.sm_count == 132 and gpu.device.sm_source == "simulation"
    assert gpu.device.compute_capability == (9, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL.replace("memoryMib", "memoryMiB"), "gpuModels.h100.memoryMiB: Extra inputs"),
        (MINIMAL.replace("model: h100}", "model: h10}"), "unknown GPU model 'h10'"),
        (MINIMAL.replace('"9.0"', '"nine"'), "gpuModels.h100.computeCapability"),
        (MINIMAL.replace("smCount: 132", "smCount: -4"), "gpuModels.h100.smCount"),
        (MINIMAL.replace("  - name: a\n", "  - name: a\n    replicas: 3\n"), "no {i} in its name"),
        (MINIMAL + "  - name: a\n    gpus: []\n", "node 'a' is listed twice"),
        (MINIMAL.replace("name: a", "name: Not_A_Node"), "not a valid node name"),
        (
            MINIMAL.replace("{model: h100}", "{model: h100, mig: [{profile: 3g, smCount: 60}]}"),
            "MIG profile '3g' is not of the form",
        ),
        (
            MINIMAL.replace("smCount: 132", "smCount: 132\n    gemm: [{size: 4096}]"),
            "needs tritonTflops and cublasTflops",
        ),
        (
            MINIMAL.replace(
                "smCount: 132", "smCount: 132\n    compile: {modes: {max-autotune: {stepMs: 1}}}"
            ),
            "need the `default` mode",
        ),
        (
            MINIMAL.replace(
                "smCount: 132", "smCount: 132\n    compile: {modes: {turbo: {stepMs: 1}}}"
            ),
            "gpuModels.h100.compile.modes.turbo",
        ),
        ("- just\n- a list\n", "a fleet file is a mapping"),
        ("name: t\nnodes: [\n", "not valid YAML at line"),
    ],
)
def test_bad_fleet_files_say_where_and_why(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FleetError) as err:
        load(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_and_unknown_node(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="fleet file not found"):
        load(tmp_path / "nope.yaml")
    fleet = load(write(tmp_path, MINIMAL))
    with pytest.raises(FleetError, match=r"no node named 'b' in this fleet \(it has a\)"):
        fleet.node("b")
