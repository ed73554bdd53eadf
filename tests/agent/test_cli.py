"""`maxtune probe` and `maxtune agent` as a person runs them (subprocesses, real exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "fleets" / "demo.yaml"


def maxtune(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maxtune.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return False
    return True


@pytest.mark.skipif(nvml_works(), reason="this machine has a GPU driver")
def test_probe_without_gpu_says_so_and_succeeds() -> None:
    done = maxtune("probe")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("No GPU on this machine:")
    assert "Nothing here is max-autotune capable." in done.stdout
    as_json = json.loads(maxtune("probe", "--json").stdout)
    assert as_json["source"] == "none" and as_json["gpus"] == []
    assert as_json["summary"]["capable"] is False


def test_probe_simulated_node_table_and_json() -> None:
    done = maxtune("probe", "--simulate", str(DEMO), "--node", "gpu-mig-0", "--level", "gemm")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SIMULATED node from fleet file demo.yaml")
    assert any("MIG 3g.40gb" in line and "nvidia.com/mig-3g.40gb" in line for line in lines)
    assert "Reference GEMM" in done.stdout
    data = json.loads(
        maxtune("probe", "--json", "--simulate", str(DEMO), "--node", "gpu-h100-1").stdout
    )
    assert data["source"] == "simulation" and len(data["gpus"]) == 8


def test_probe_torch_rule_flag() -> None:
    data = json.loads(
        maxtune(
            "probe", "--json", "--simulate", str(DEMO), "--node", "gpu-rtx3080-0", "--torch", "2.3"
        ).stdout
    )
    assert [g["verdict"]["capable"] for g in data["gpus"]] == [False, False]
    assert data["gpus"][0]["verdict"]["rule"] == "SMs: 68 < 80"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probe", "--node", "x"], "--node only makes sense with --simulate"),
        (["probe", "--simulate", "/nonexistent.yaml", "--node", "x"], "fleet file not found"),
        (["probe", "--simulate", str(DEMO), "--node", "nope"], "no node named 'nope'"),
        (["probe", "--simulate", str(DEMO)], "--simulate needs the node"),
        (["probe", "--torch", "1.13"], "predates torch.compile"),
        (["agent"], "--node-name (or env NODE_NAME) is required"),
        (["agent", "--node-name", "n", "--interval", "0"], "--interval must be > 0"),
        (
            ["agent", "--node-name", "n", "--kubeconfig", "/nonexistent/kubeconfig"],
            "no cluster configuration",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    done = maxtune(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr


def test_agent_once_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    log = tmp_path / "measure.json"
    done = maxtune(
        "agent",
        "--once",
        "--simulate",
        str(DEMO),
        "--node-name",
        "gpu-a100-0",
        "--profile-file",
        str(out),
        "--measurement-log",
        str(log),
    )
    assert done.returncode == 0, done.stderr
    profile = json.loads(out.read_text())
    assert profile["metadata"]["name"] == "gpu-a100-0" == profile["spec"]["nodeName"]
    assert profile["status"]["source"] == "simulation"
    assert {c["type"]: c["status"] for c in profile["status"]["conditions"]}["Ready"] == "True"
    assert len(json.loads(log.read_text())) == 8
    assert "first complete profile published" in done.stderr
