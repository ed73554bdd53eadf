"""What the chart renders for the operator: replicas, PDB, spread, probes, hardening, TLS mount."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helmkit import FULLNAME, NAMESPACE, container, flag, pod_spec, render

OPERATOR = f"{FULLNAME}-operator"
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return render(values).get("Deployment", OPERATOR)


def test_default_kinds_and_names() -> None:
    rendered = render()
    expected = {
        ("Deployment", OPERATOR),
        ("DaemonSet", f"{FULLNAME}-agent"),
        ("PodDisruptionBudget", OPERATOR),
        ("Service", f"{FULLNAME}-webhook"),
        ("Service", f"{FULLNAME}-operator-metrics"),
        ("Service", f"{FULLNAME}-agent-metrics"),
        ("Secret", f"{FULLNAME}-webhook-tls"),
        ("MutatingWebhookConfiguration", FULLNAME),
        ("ValidatingAdmissionPolicy", f"{FULLNAME}-agent-own-profile"),
        ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-agent-own-profile"),
        ("ValidatingAdmissionPolicy", f"{FULLNAME}-operator-node-labels"),
        ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-operator-node-labels"),
        ("ServiceAccount", OPERATOR),
        ("ServiceAccount", f"{FULLNAME}-agent"),
        ("ServiceAccount", f"{FULLNAME}-cleanup"),
        ("ServiceAccount", f"{FULLNAME}-test"),
        ("ClusterRole", OPERATOR),
        ("ClusterRole", f"{FULLNAME}-agent"),
        ("ClusterRole", f"{FULLNAME}-cleanup"),
        ("ClusterRoleBinding", OPERATOR),
        ("ClusterRoleBinding", f"{FULLNAME}-agent"),
        ("ClusterRoleBinding", f"{FULLNAME}-cleanup"),
        ("Role", OPERATOR),
        ("RoleBinding", OPERATOR),
        ("Role", f"{FULLNAME}-agent"),
        ("RoleBinding", f"{FULLNAME}-agent"),
        ("Job", f"{FULLNAME}-cleanup"),
        ("ConfigMap", f"{FULLNAME}-test"),
        ("Pod", f"{FULLNAME}-test"),
        ("CustomResourceDefinition", "gpunodeprofiles.maxtune.io"),
        ("CustomResourceDefinition", "autotunepolicies.maxtune.io"),
    }
    found = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered.objects}
    assert found == expected
    # Only the optional APIs' kinds are absent by default.
    optional = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy", "Certificate"}
    assert not (optional | {"Issuer"}) & set(rendered.kinds())
    for obj in rendered.objects:
        cluster_scoped = obj["kind"].startswith(
            ("Cluster", "Mutating", "ValidatingAdmission", "CustomResourceDefinition")
        )
        assert obj["metadata"].get("namespace") == (None if cluster_scoped else NAMESPACE), obj


@pytest.mark.parametrize("replicas", [2, 3, 1])
def test_replicas_default_two(replicas: int) -> None:
    values = None if replicas == 2 else {"operator": {"replicas": replicas}}
    assert deployment(values)["spec"]["replicas"] == replicas


def test_pdb_keeps_one_webhook_replica() -> None:
    rendered = render()
    pdb = rendered.get("PodDisruptionBudget", OPERATOR)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]
    assert not render({"operator": {"podDisruptionBudget": {"enabled": False}}}).has(
        "PodDisruptionBudget", OPERATOR
    )


def test_rollout_never_drops_a_ready_replica() -> None:
    strategy = deployment()["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_anti_affinity_preferred_by_hostname_and_selecting_operator_pods() -> None:
    spec = pod_spec(deployment())
    preferred = spec["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert len(preferred) == 1
    term = preferred[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"

    hard = pod_spec(deployment({"operator": {"podAntiAffinity": "hard"}}))["affinity"]
    assert hard["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0] == term
    assert "affinity" not in pod_spec(deployment({"operator": {"podAntiAffinity": "none"}}))


def test_extra_affinity_is_kept_next_to_anti_affinity() -> None:
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}
            ]
        }
    }
    affinity = pod_spec(deployment({"operator": {"affinity": {"nodeAffinity": node_affinity}}}))[
        "affinity"
    ]
    assert affinity["nodeAffinity"] == node_affinity
    assert "podAntiAffinity" in affinity


def test_command_and_flags_are_plain_and_complete() -> None:
    main = container(deployment(), "operator")
    assert main["command"] == ["maxtune"]
    args = main["args"]
    assert args[0] == "operator"
    assert flag(args, "--webhook-port") == "9443"
    assert flag(args, "--metrics-port") == "8080"
    assert flag(args, "--webhook-host") == flag(args, "--metrics-host") == "0.0.0.0"
    assert flag(args, "--tls-cert-file") == "/etc/maxtune/tls/tls.crt"
    assert flag(args, "--tls-key-file") == "/etc/maxtune/tls/tls.key"
    assert "--leader-election" in args
    assert flag(args, "--lease-name") == "maxtune-labeller"
    # Every value is a plain string: a test can run these arguments as a local process.
    assert all(isinstance(arg, str) and "$(" not in arg for arg in args)

    single = container(deployment({"operator": {"leaderElection": {"enabled": False}}}), "operator")
    assert "--no-leader-election" in single["args"] and "--leader-election" not in single["args"]
    local = container(deployment({"listenHost": "127.0.0.1"}), "operator")["args"]
    assert flag(local, "--webhook-host") == flag(local, "--metrics-host") == "127.0.0.1"


def test_leader_election_off_drops_its_lease_rules_only() -> None:
    """Without leader election the operator still follows the agents' heartbeat Leases."""
    rendered = render({"operator": {"leaderElection": {"enabled": False}}})
    rules = rendered.get("Role", OPERATOR)["rules"]
    assert rules == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["list", "watch"],
        }
    ]


def test_pod_identity_from_the_downward_api() -> None:
    env = {item["name"]: item for item in container(deployment(), "operator")["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_probes_on_health_endpoints_of_the_metrics_port() -> None:
    main = container(deployment(), "operator")
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports == {"webhook": 9443, "metrics": 8080}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_resources_set_and_overridable() -> None:
    main = container(deployment(), "operator")
    assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]
    custom = {"requests": {"cpu": "250m", "memory": "1.5Gi"}, "limits": {"cpu": 1, "memory": "2Gi"}}
    assert container(deployment({"operator": {"resources": custom}}), "operator")["resources"] == (
        custom
    )


def test_every_pod_of_the_chart_is_hardened() -> None:
    values = {"agent": {"simulate": {"enabled": True, "fleetConfigMap": "fleet"}}}
    for rendered in (render(), render(values)):
        for workload in rendered.workloads():
            spec = pod_spec(workload)
            assert spec["securityContext"]["runAsNonRoot"] is True, workload["kind"]
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert not spec.get("hostNetwork") and not spec.get("hostPID")
            for item in spec["containers"] + spec.get("initContainers", []):
                assert item["securityContext"] == RESTRICTED_CONTAINER, workload["metadata"]
                assert item["resources"]["limits"]["memory"], workload["metadata"]


def test_tls_secret_mounted_whole_read_only() -> None:
    spec = pod_spec(deployment())
    mounts = {m["name"]: m for m in container(deployment(), "operator")["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/maxtune/tls", "readOnly": True}
    assert "subPath" not in mounts["tls"]  # a renewed certificate must reach the pod
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == f"{FULLNAME}-webhook-tls"
    assert {item["key"] for item in volumes["tls"]["secret"]["items"]} == {"tls.crt", "tls.key"}


def test_scrape_annotations_optional() -> None:
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    off = deployment({"metrics": {"scrapeAnnotations": False}})
    assert "annotations" not in off["spec"]["template"]["metadata"]


def test_image_tag_defaults_to_app_version_and_digest_wins() -> None:
    assert container(deployment(), "operator")["image"] == "maxtune-operator:0.1.0"
    digest = "sha256:" + "a" * 64
    pinned = deployment({"operator": {"image": {"repository": "r.example/op", "digest": digest}}})
    assert container(pinned, "operator")["image"] == f"r.example/op@{digest}"


def test_webhook_and_metrics_services_route_to_named_ports() -> None:
    rendered = render()
    selector = deployment()["spec"]["selector"]["matchLabels"]
    webhook = rendered.get("Service", f"{FULLNAME}-webhook")
    assert webhook["spec"]["selector"] == selector
    assert webhook["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    metrics = rendered.get("Service", f"{FULLNAME}-operator-metrics")
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"


def test_every_chart_pod_selects_linux_nodes() -> None:
    rendered = render()
    for workload in rendered.workloads():
        assert pod_spec(workload)["nodeSelector"] == {"kubernetes.io/os": "linux"}, workload["kind"]


def test_the_compile_cache_directory_reaches_the_operator_only_when_the_cache_is_on() -> None:
    off = container(deployment(), "operator")
    assert "--compile-cache-directory" not in off["args"]
    values = {"compileCache": {"enabled": True, "groups": [{"name": "r", "namespaces": ["a"]}]}}
    rendered = deployment(values)
    on = container(rendered, "operator")
    assert flag(on["args"], "--compile-cache-directory") == (
        "/etc/maxtune/compile-cache/directory.json"
    )
    mount = next(m for m in on["volumeMounts"] if m["name"] == "compile-cache-directory")
    assert mount == {
        "name": "compile-cache-directory",
        "mountPath": "/etc/maxtune/compile-cache",
        "readOnly": True,
    }
    volume = next(v for v in pod_spec(rendered)["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"] == {"name": f"{FULLNAME}-compile-cache", "optional": True}
    directory = render(values).get("ConfigMap", f"{FULLNAME}-compile-cache")
    text = directory["data"]["directory.json"]
    assert '"urlTemplate"' in text and "$(MAXTUNE_CACHE_PASSWORD)" in text
