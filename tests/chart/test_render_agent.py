"""The agent DaemonSet: GPU nodes only, GPU taints tolerated, no GPU requested, simulation named."""

from __future__ import annotations

from typing import Any

from tests.chart.helmkit import FULLNAME, container, flag, pod_spec, render

AGENT = f"{FULLNAME}-agent"
SIMULATE = {"agent": {"simulate": {"enabled": True, "fleetConfigMap": "demo-fleet"}}}


def daemonset(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return render(values).get("DaemonSet", AGENT)


def test_runs_only_where_a_gpu_presence_label_is() -> None:
    affinity = pod_spec(daemonset())["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    # Terms are ORed: any one of the three GPU presence signals is enough.
    assert terms == [
        {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
            ]
        },
        {
            "matchExpressions": [
                {
                    "key": "feature.node.kubernetes.io/pci-10de.present",
                    "operator": "In",
                    "values": ["true"],
                }
            ]
        },
        {"matchExpressions": [{"key": "nvidia.com/gpu.count", "operator": "Exists"}]},
    ]
    assert "preferredDuringSchedulingIgnoredDuringExecution" not in affinity


def test_gpu_presence_is_configurable() -> None:
    custom = [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}]
    affinity = pod_spec(daemonset({"agent": {"gpuNodeSelectorTerms": custom}}))["affinity"]
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": custom
    }


def test_tolerates_gpu_taints_of_any_value_and_effect() -> None:
    tolerations = pod_spec(daemonset())["tolerations"]
    assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    extra = {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    more = pod_spec(daemonset({"agent": {"extraTolerations": [extra]}}))["tolerations"]
    assert more == [*tolerations, extra]


def test_requests_no_gpu_and_asks_the_runtime_for_all_of_them() -> None:
    main = container(daemonset(), "agent")
    for section in ("requests", "limits"):
        assert not [r for r in main["resources"].get(section, {}) if r.startswith("nvidia.com/")]
    env = {item["name"]: item.get("value") for item in main["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"


def test_runtime_class_optional() -> None:
    assert "runtimeClassName" not in pod_spec(daemonset())
    spec = pod_spec(daemonset({"agent": {"runtimeClassName": "nvidia"}}))
    assert spec["runtimeClassName"] == "nvidia"


def test_node_name_from_the_pod_and_flags_plain() -> None:
    main = container(daemonset(), "agent")
    node = next(item for item in main["env"] if item["name"] == "NODE_NAME")
    assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert main["command"] == ["maxtune"]
    args = main["args"]
    assert args[0] == "agent"
    assert flag(args, "--level") == "full"
    assert flag(args, "--interval") == "60"
    assert flag(args, "--metrics-host") == "0.0.0.0"
    assert flag(args, "--metrics-port") == "9400"
    assert flag(args, "--simulate") is None
    assert all(isinstance(arg, str) and "$(" not in arg for arg in args)
    tuned = container(daemonset({"agent": {"level": "inventory", "intervalSeconds": 60}}), "agent")
    assert flag(tuned["args"], "--level") == "inventory"
    assert flag(tuned["args"], "--interval") == "60"


def test_probes_and_metrics_port() -> None:
    main = container(daemonset(), "agent")
    assert main["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # Importing torch and the first measurement may take minutes: liveness waits for startup.
    startup = main["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_caches_live_on_writable_volumes() -> None:
    main = container(daemonset(), "agent")
    env = {item["name"]: item.get("value") for item in main["env"]}
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    for variable in ("HOME", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        assert any(str(env[variable]).startswith(path) for path in mounts), variable
    assert "/tmp" in mounts


def test_simulation_is_explicit_and_mounts_the_fleet() -> None:
    ds = daemonset(SIMULATE)
    assert ds["metadata"]["labels"]["maxtune.io/simulation"] == "true"
    assert ds["spec"]["template"]["metadata"]["labels"]["maxtune.io/simulation"] == "true"
    main = container(ds, "agent")
    assert flag(main["args"], "--simulate") == "/etc/maxtune/simulation/fleet.yaml"
    mount = next(m for m in main["volumeMounts"] if m["name"] == "simulation")
    assert mount["mountPath"] == "/etc/maxtune/simulation" and mount["readOnly"] is True
    volume = next(v for v in pod_spec(ds)["volumes"] if v["name"] == "simulation")
    assert volume["configMap"]["name"] == "demo-fleet"
    # No real GPU is asked of the runtime in a simulation.
    assert "NVIDIA_VISIBLE_DEVICES" not in {item["name"] for item in main["env"]}
    assert "maxtune.io/simulation" not in daemonset()["metadata"]["labels"]


def test_agent_can_be_turned_off() -> None:
    rendered = render({"agent": {"enabled": False}})
    assert not rendered.all("DaemonSet")
    names = {obj["metadata"]["name"] for obj in rendered.objects}
    assert not {n for n in names if n.startswith(AGENT)}


def test_agent_metrics_service_is_headless_per_pod() -> None:
    service = render().get("Service", f"{FULLNAME}-agent-metrics")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == daemonset()["spec"]["selector"]["matchLabels"]


def test_agent_runs_on_linux_nodes_at_node_critical_priority_unless_told() -> None:
    spec = pod_spec(render().get("DaemonSet", f"{FULLNAME}-agent"))
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["priorityClassName"] == "system-node-critical"
    custom = render({"agent": {"priorityClassName": "", "nodeSelector": {"pool": "gpu"}}})
    spec = pod_spec(custom.get("DaemonSet", f"{FULLNAME}-agent"))
    # Helm merges maps: a selector of one's own keeps the OS (`kubernetes.io/os: null` drops it).
    assert "priorityClassName" not in spec
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "gpu"}
