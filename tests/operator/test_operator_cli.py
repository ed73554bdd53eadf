"""`maxtune mutate` offline, and the promise that the operator never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from maxtune.cli.main import main
from maxtune_dev.testkit import H100, T4, gpu_container, node, pod, profile, stale

_OPERATOR = Path(__file__).resolve().parents[2] / "operator/maxtune/operator"
OPERATOR_MODULES = [
    ".".join(p.relative_to(_OPERATOR).with_suffix("").parts)
    for p in sorted(_OPERATOR.rglob("*.py"))
    if p.stem != "__init__"
]


def fleet_dir(tmp: Path, age_hours: float = 0) -> Path:
    folder = tmp / "profiles"
    folder.mkdir()
    beat = stale(age_hours) if age_hours else None
    (folder / "h100.yaml").write_text(yaml.safe_dump(profile("h100-0", H100, heartbeat=beat)))
    docs = [profile("t4-0", T4, 4, heartbeat=beat), profile("t4-1", T4, 4, heartbeat=beat)]
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


def test_saved_profiles_are_judged_as_of_their_own_heartbeats_unless_asked(
    tmp_path: Path, capsys: Any
) -> None:
    """Profiles saved a day ago still preview (the 2026-12-01 report: everything was stale
    after 300 s); --as-of judges their age at a given time and says what that leaves."""
    profiles = fleet_dir(tmp_path, age_hours=24)
    asking = pod(gpu_container(), annotations={"maxtune.io/steering": "require"})
    pod_file = write_pod(tmp_path, asking)
    out = run_json("--pod", str(pod_file), "--profiles", str(profiles), capsys=capsys)
    assert out["decision"]["mode"] == "max-autotune" and out["decision"]["steered"] is True
    source = out["source"]
    assert (source["profiles"], source["nodes"], source["files"]) == (3, 3, 2)
    assert source["asOf"] is None and source["stale"] == 0
    assert out["placement"]["remaining"] == 3 and out["placement"]["profiles"]["current"] == 3

    out = run_json(
        "--pod", str(pod_file), "--profiles", str(profiles), "--as-of", "now", capsys=capsys
    )
    assert out["decision"]["mode"] is None and out["source"]["stale"] == 3
    assert "none with a current profile (3 stale, 0 without one)" in out["placement"]["text"]

    saved_at = source["heartbeats"][0]  # as of the moment they were saved: current again
    out = run_json(
        "--pod", str(pod_file), "--profiles", str(profiles), "--as-of", saved_at, capsys=capsys
    )
    assert out["decision"]["mode"] == "max-autotune" and out["source"]["asOf"] == saved_at

    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("# maxtune mutate: read 3 GPUNodeProfile(s) and 3 node(s) from ")
    assert "judged current, as of their own heartbeats" in first


def test_mutate_names_what_excluded_every_node(tmp_path: Path, capsys: Any) -> None:
    profiles = fleet_dir(tmp_path)
    # Node manifests beside the profiles give the nodes their real labels and taints.
    taint = {"key": "dedicated", "value": "infer", "effect": "NoSchedule"}
    nodes = [
        node("h100-0", {"nvidia.com/gpu": "8"}, labels={"pool": "train"}),
        node("t4-0", {"nvidia.com/gpu": "4"}, taints=[taint]),
    ]
    (profiles / "nodes.yaml").write_text(yaml.safe_dump({"kind": "List", "items": nodes}))
    selecting = pod(gpu_container(), spec={"nodeSelector": {"pool": "infer"}})
    pod_file = write_pod(tmp_path, selecting)
    out = run_json("--pod", str(pod_file), "--profiles", str(profiles), capsys=capsys)
    assert (out["source"]["nodes"], out["source"]["nodeManifests"]) == (3, 2)
    excluded = {(e["rule"], e["subject"], e["nodes"]) for e in out["placement"]["excluded"]}
    assert excluded == {
        ("taint", "dedicated=infer:NoSchedule", 1),
        ("nodeSelector", "pool=infer", 2),
    }
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 0
    text = capsys.readouterr().out
    assert "# placement: none of 3 node(s) remains: taint dedicated=infer:NoSchedule" in text
    assert "nodeSelector pool=infer excludes 2 node(s) (h100-0, t4-1)" in text
    # The labels the selector asks for are in the manifest: the pod may land there.
    matching = pod(gpu_container(), spec={"nodeSelector": {"pool": "train"}})
    out = run_json(
        "--pod", str(write_pod(tmp_path, matching)), "--profiles", str(profiles), capsys=capsys
    )
    assert out["decision"]["mode"] == "max-autotune" and out["placement"]["remaining"] == 1


def test_mutate_fails_in_one_line_on_a_folder_without_profiles_or_a_stray_file(
    tmp_path: Path, capsys: Any
) -> None:
    pod_file = write_pod(tmp_path, pod(gpu_container()))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("not a manifest")
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no GPUNodeProfile in 0 file(s)" in err

    profiles = fleet_dir(tmp_path)
    (profiles / "deploy.yaml").write_text(yaml.safe_dump({"kind": "Deployment"}))
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "deploy.yaml: a Deployment is not a GPUNodeProfile or a Node" in err

    (profiles / "deploy.yaml").write_text(yaml.safe_dump(profile("h100-0", H100)))
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 2
    assert "GPUNodeProfile h100-0 is also in" in capsys.readouterr().err

    (profiles / "deploy.yaml").write_text(
        yaml.safe_dump({**profile("x-0", H100), "status": {"gpus": "many"}})
    )
    assert main(["mutate", "--pod", str(pod_file), "--profiles", str(profiles)]) == 2
    assert "GPUNodeProfile x-0: status does not validate" in capsys.readouterr().err

    (profiles / "deploy.yaml").unlink()
    for bad in ("yesterday", "2026-12-01T10:00:00"):
        argv = ["mutate", "--pod", str(pod_file), "--profiles", str(profiles), "--as-of", bad]
        assert main(argv) == 2
        assert "--as-of" in capsys.readouterr().err


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


@pytest.mark.parametrize("flag", ["--label-concurrency", "--profile-page-size"])
def test_operator_refuses_a_count_below_one(flag: str, tmp_path: Path, capsys: Any) -> None:
    """No patch would ever be written with zero in flight, no profile listed in pages of
    zero: refused before anything starts."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("unused")
    key.write_text("unused")
    argv = ["operator", "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    assert main([*argv, flag, "0", "--no-leader-election"]) == 2
    assert f"{flag} must be at least 1, not 0" in capsys.readouterr().err
