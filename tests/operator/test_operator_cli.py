"""`maxtune mutate` offline, and the promise that the operator never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from maxtune.cli.main import main
from maxtune_dev.testkit import H100, T4, gpu_container, pod, profile

_OPERATOR = Path(__file__).resolve().parents[2] / "operator/maxtune/operator"
OPERATOR_MODULES = [
    ".".join(p.relative_to(_OPERATOR).with_suffix("").parts)
    for p in sorted(_OPERATOR.rglob("*.py"))
    if p.stem != "__init__"
]


def fleet_dir(tmp: Path) -> Path:
    folder = tmp / "profiles"
    folder.mkdir()
    (folder / "h100.yaml").write_text(yaml.safe_dump(profile("h100-0", H100)))
    docs = [profile("t4-0", T4, 4), profile("t4-1", T4, 4)]
    (folder / "t4s.yaml").write_text(yaml.safe_dump_all(docs))
    (folder / "notes.txt").write_text("ignored")
    return folder


def write_pod(tmp: Path, obj: dict[str, Any]) -> Path:
    path = tmp / "pod.yaml"
    path.write_text(yaml.safe_dump(obj))
    return path


def run_json(*args: str, capsys: Any) -> dict[str, Any]:
    assert main(["mutate", *args, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_mutate_previews_the_webhook_offline(tmp_path: Path, capsys: Any) -> None:
    profiles = fleet_dir(tmp_path)
    asking = pod(gpu_container(), annotations={"maxtune.io/steering": "require"})
    pod_file = write_pod(tmp_path, asking)
    out = run_json("--pod", str(pod_file), "--profiles", str(profiles), capsys=capsys)
    env = {e["name"]: e["value"] for e in out["pod"]["spec"]["containers"][0]["env"]}
    assert env["TORCHINDUCTOR_MAX_AUTOTUNE"] == "1"
    assert out["decision"]["steered"] is True and out["decision"]["mode"] == "max-autotune"
    assert out["pod"]["metadata"]["annotations"]["maxtune.io/decision"]
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 0
    text = capsys.readouterr().out
    assert "TORCHINDUCTOR_CUDAGRAPHS" in text and "# maxtune decision:" in text


def test_mutate_with_policy_and_namespace_labels(tmp_path: Path, capsys: Any) -> None:
    profiles = fleet_dir(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "maxtune.io/v1alpha1",
                "kind": "AutotunePolicy",
                "metadata": {"name": "default"},
                "spec": {"steering": "none"},
            }
        )
    )
    unlabelled = pod(gpu_container())
    del unlabelled["metadata"]["labels"]["maxtune.io/inject"]
    pod_file = write_pod(tmp_path, unlabelled)
    out = run_json("--pod", str(pod_file), "--profiles", str(profiles), capsys=capsys)
    assert out["decision"] == {"mutated": False, "reason": "not opted in"} and out["patch"] == []
    out = run_json(
        "--pod",
        str(pod_file),
        "--profiles",
        str(profiles),
        "--policy",
        str(policy),
        "--namespace-labels",
        "maxtune.io/inject=enabled,team=ml",
        capsys=capsys,
    )
    assert out["decision"]["policy"] == "default" and out["decision"]["steered"] is False
    assert out["decision"]["mode"] == "default"  # T4s among the candidates


def test_mutate_reports_bad_input(tmp_path: Path) -> None:
    not_a_pod = write_pod(tmp_path, {"kind": "Deployment"})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "maxtune.cli.main",
            "mutate",
            "--pod",
            str(not_a_pod),
            "--profiles",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "expected exactly one Pod manifest" in result.stderr


def test_operator_code_never_imports_torch(tmp_path: Path) -> None:
    """The operator image has no torch: importing it, --help and mutate must not pull it in."""
    profiles = fleet_dir(tmp_path)
    pod_file = write_pod(tmp_path, pod(gpu_container()))
    script = f"""
import contextlib, importlib, io, sys
for name in {OPERATOR_MODULES!r}:
    importlib.import_module("maxtune.operator." + name)
from maxtune.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    for argv in (["operator", "--help"], ["cleanup", "--help"], ["status", "--help"]):
        try:
            main(argv)
        except SystemExit:
            pass
    assert main(["mutate", "--pod", {str(pod_file)!r}, "--profiles", {str(profiles)!r}]) == 0
assert "aiohttp" in sys.modules and "maxtune.operator.informer" in sys.modules  # really imported
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "triton")))
print(bad)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
