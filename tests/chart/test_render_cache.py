"""The chart's compile cache (compileCache, templates/cache/) as `helm template` renders it.

What the servers do with this configuration is tested against real redis-servers in
tests/cache/; here: which objects exist, where credentials go (and where they never go), the
pod's security, the NetworkPolicy, and the values the chart refuses.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from maxtune.agent import cacheproof
from tests.chart.helmkit import (
    CHART,
    FULLNAME,
    NAMESPACE,
    Rendered,
    container,
    helm,
    pod_spec,
    render,
    render_error,
    values_args,
)

GROUPS = [
    {"name": "vision", "namespaces": ["cv-train", "cv-ci"], "readOnlyNamespaces": ["cv-serve"]},
    {"name": "team-b", "namespaces": ["team-b"]},
]
COMPONENT = "compile-cache"


def cache(**values: Any) -> Rendered:
    return render({"compileCache": {"enabled": True, "groups": GROUPS, **values}})


def cache_objects(rendered: Rendered) -> list[dict[str, Any]]:
    return [
        o
        for o in rendered.objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == COMPONENT
    ]


def names(rendered: Rendered, kind: str) -> set[tuple[str, str]]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in cache_objects(rendered)
        if o["kind"] == kind
    }


def secret_data(obj: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def test_off_by_default() -> None:
    assert cache_objects(render()) == []
    assert cache_objects(render({"compileCache": {"groups": GROUPS}})) == []


def test_one_server_per_group_and_one_secret_per_member_namespace() -> None:
    rendered = cache()
    servers = {(NAMESPACE, f"{FULLNAME}-cache-vision"), (NAMESPACE, f"{FULLNAME}-cache-team-b")}
    assert names(rendered, "Deployment") == servers
    assert names(rendered, "Service") == servers
    assert names(rendered, "NetworkPolicy") == servers
    members = {("cv-train", "maxtune-compile-cache"), ("cv-ci", "maxtune-compile-cache")}
    members |= {("cv-serve", "maxtune-compile-cache"), ("team-b", "maxtune-compile-cache")}
    agent = (NAMESPACE, f"{FULLNAME}-compile-cache-agent")
    assert names(rendered, "Secret") == servers | members | {agent}
    assert names(rendered, "ConfigMap") == {
        (NAMESPACE, f"{FULLNAME}-cache-config"),
        (NAMESPACE, f"{FULLNAME}-compile-cache"),
    }
    assert names(rendered, "ServiceAccount") == {(NAMESPACE, f"{FULLNAME}-compile-cache")}
    assert names(rendered, "PersistentVolumeClaim") == set()
    assert names(rendered, "PodDisruptionBudget") == set()


def test_member_secrets_hold_only_their_own_user() -> None:
    rendered = cache()
    server = secret_data(rendered.get("Secret", f"{FULLNAME}-cache-vision"))
    assert set(server) == {"ns-cv-train", "ns-cv-ci", "ro-cv-serve", "svc-agent", "svc-probe"}
    for obj in rendered.all("Secret"):
        if obj["metadata"]["name"] != "maxtune-compile-cache":
            continue
        ns = obj["metadata"]["namespace"]
        data = secret_data(obj)
        user = ("ro-" if ns == "cv-serve" else "ns-") + ns
        assert set(data) == {"username", "password", "url", "host", "port"}
        assert data["username"] == user
        group = "team-b" if ns == "team-b" else "vision"
        host = f"{FULLNAME}-cache-{group}.{NAMESPACE}.svc.cluster.local"
        assert data["host"] == host and data["port"] == "6379"
        if group == "vision":
            assert data["password"] == server[user]
        assert data["url"] == (
            f"redis://{user}:{data['password']}@{host}:6379"
            "?socket_connect_timeout=2&socket_timeout=5"
        )
        annotations = obj["metadata"]["annotations"]
        assert annotations["maxtune.io/cache-readonly"] == str(ns == "cv-serve").lower()


def test_passwords_appear_in_secrets_only() -> None:
    rendered = cache(metrics={"enabled": True})
    passwords = {
        p
        for o in rendered.all("Secret")
        if o["metadata"]["name"].startswith(f"{FULLNAME}-cache-")
        for p in secret_data(o).values()
    }
    assert len(passwords) == 6 + 4  # vision: 3 namespaces, agent, probe, exporter; team-b: 1 + 3
    for obj in rendered.objects:
        if obj["kind"] != "Secret":
            text = json.dumps(obj)
            assert not [p for p in passwords if p in text], obj["metadata"]["name"]


def test_directory_tells_the_webhook_where_each_namespace_caches() -> None:
    directory = json.loads(
        cache().get("ConfigMap", f"{FULLNAME}-compile-cache")["data"]["directory.json"]
    )
    assert directory["version"] == 1
    assert set(directory["namespaces"]) == {"cv-train", "cv-ci", "cv-serve", "team-b"}
    serve = directory["namespaces"]["cv-serve"]
    assert serve["group"] == "vision" and serve["readOnly"] is True
    assert serve["username"] == "ro-cv-serve" and serve["port"] == 6379
    assert serve["secretName"] == "maxtune-compile-cache" and serve["urlKey"] == "url"
    assert serve["urlTemplate"].startswith("redis://ro-cv-serve:$(MAXTUNE_CACHE_PASSWORD)@")


def test_pods_meet_restricted_pod_security() -> None:
    rendered = cache(metrics={"enabled": True})
    for deployment in rendered.all("Deployment"):
        if deployment["metadata"]["labels"]["app.kubernetes.io/component"] != COMPONENT:
            continue
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == f"{FULLNAME}-compile-cache"
        for item in spec["initContainers"] + spec["containers"]:
            context = item["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
        kinds = {next(k for k in v if k != "name") for v in spec["volumes"]}
        assert kinds <= {"configMap", "secret", "emptyDir", "persistentVolumeClaim"}
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert [c["name"] for c in spec["containers"]] == ["redis", "exporter"]


def test_server_builds_its_acl_at_start_and_probes_as_the_probe_user() -> None:
    deployment = cache().get("Deployment", f"{FULLNAME}-cache-vision")
    spec = pod_spec(deployment)
    init = spec["initContainers"][0]
    assert init["command"] == ["/bin/sh", "/config/make-acl.sh", "/secrets", "/acl/users.acl"]
    redis = container(deployment, "redis")
    assert redis["command"] == ["redis-server", "/config/redis.conf"]
    assert redis["env"] == [
        {
            "name": "REDISCLI_AUTH",
            "valueFrom": {"secretKeyRef": {"name": f"{FULLNAME}-cache-vision", "key": "svc-probe"}},
        }
    ]
    assert "--user svc-probe" in redis["readinessProbe"]["exec"]["command"][-1]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["acl"]["emptyDir"]["medium"] == "Memory"
    assert volumes["credentials"]["secret"]["secretName"] == f"{FULLNAME}-cache-vision"
    assert "emptyDir" in volumes["data"]


def test_users_checksum_restarts_the_server_when_members_change() -> None:
    def checksum(groups: list[dict[str, Any]]) -> str:
        rendered = render({"compileCache": {"enabled": True, "groups": groups}})
        deployment = rendered.get("Deployment", f"{FULLNAME}-cache-team-b")
        annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/users"]

    one = checksum([{"name": "team-b", "namespaces": ["team-b"]}])
    assert one == checksum([{"name": "team-b", "namespaces": ["team-b"]}])
    assert one != checksum([{"name": "team-b", "namespaces": ["team-b", "team-c"]}])


def test_network_policy_admits_the_group_and_the_agent_only() -> None:
    policy = cache().get("NetworkPolicy", f"{FULLNAME}-cache-vision")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == []
    assert policy["podSelector"]["matchLabels"]["maxtune.io/cache-group"] == "vision"
    members, agent = policy["ingress"]
    assert members["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["cv-train", "cv-ci", "cv-serve"],
                    }
                ]
            }
        }
    ]
    assert members["ports"] == [{"port": "redis", "protocol": "TCP"}]
    peer = agent["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "agent"


def test_agent_access_can_be_turned_off() -> None:
    rendered = cache(agentAccess=False)
    assert "svc-agent" not in secret_data(rendered.get("Secret", f"{FULLNAME}-cache-vision"))
    assert not rendered.has("Secret", f"{FULLNAME}-compile-cache-agent")
    policy = rendered.get("NetworkPolicy", f"{FULLNAME}-cache-vision")["spec"]
    assert len(policy["ingress"]) == 1


def test_agent_secret_has_one_url_per_group() -> None:
    rendered = cache()
    agent = secret_data(rendered.get("Secret", f"{FULLNAME}-compile-cache-agent"))
    assert set(agent) == {"vision", "team-b"}
    vision = secret_data(rendered.get("Secret", f"{FULLNAME}-cache-vision"))
    assert agent["vision"].startswith(f"redis://svc-agent:{vision['svc-agent']}@{FULLNAME}-cache-")


def test_metrics_sidecar_reads_as_the_exporter_user() -> None:
    rendered = cache(
        metrics={"enabled": True},
        networkPolicy={"metricsFrom": [{"namespaceSelector": {"matchLabels": {"m": "yes"}}}]},
    )
    deployment = rendered.get("Deployment", f"{FULLNAME}-cache-vision")
    exporter = container(deployment, "exporter")
    env = {e["name"]: e for e in exporter["env"]}
    assert env["REDIS_USER"]["value"] == "svc-exporter"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "svc-exporter"
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}]
    service = rendered.get("Service", f"{FULLNAME}-cache-vision")
    assert [p["name"] for p in service["spec"]["ports"]] == ["redis", "metrics"]
    policy = rendered.get("NetworkPolicy", f"{FULLNAME}-cache-vision")["spec"]
    assert policy["ingress"][-1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_persistence_and_pdb_are_opt_in() -> None:
    rendered = cache(
        persistence={"enabled": True, "size": "5Gi"}, podDisruptionBudget={"enabled": True}
    )
    claim = rendered.get("PersistentVolumeClaim", f"{FULLNAME}-cache-vision")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    spec = pod_spec(rendered.get("Deployment", f"{FULLNAME}-cache-vision"))
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": f"{FULLNAME}-cache-vision"},
    }
    conf = rendered.get("ConfigMap", f"{FULLNAME}-cache-config")["data"]["redis.conf"]
    assert "save 900 1 300 100" in conf
    assert (
        rendered.get("PodDisruptionBudget", f"{FULLNAME}-cache-vision")["spec"]["minAvailable"] == 1
    )
    plain = cache().get("ConfigMap", f"{FULLNAME}-cache-config")["data"]["redis.conf"]
    assert 'save ""' in plain and "maxmemory-policy allkeys-lru" in plain


def test_existing_secret_and_external_endpoint() -> None:
    groups = [
        {"name": "gitops", "namespaces": ["a"], "existingSecret": "my-cache-users"},
        {
            "name": "ext",
            "namespaces": ["b"],
            "external": {"host": "redis.example.org", "port": 6380},
        },
    ]
    rendered = render({"compileCache": {"enabled": True, "groups": groups}})
    secrets = names(rendered, "Secret")
    assert secrets == set()  # neither group's passwords are the chart's
    spec = pod_spec(rendered.get("Deployment", f"{FULLNAME}-cache-gitops"))
    credentials = next(v for v in spec["volumes"] if v["name"] == "credentials")
    assert credentials["secret"]["secretName"] == "my-cache-users"
    assert not rendered.has("Deployment", f"{FULLNAME}-cache-ext")
    assert not rendered.has("NetworkPolicy", f"{FULLNAME}-cache-ext")
    directory = json.loads(
        rendered.get("ConfigMap", f"{FULLNAME}-compile-cache")["data"]["directory.json"]
    )
    assert directory["namespaces"]["b"]["host"] == "redis.example.org"
    assert directory["namespaces"]["b"]["port"] == 6380


def test_member_secrets_can_be_left_to_the_user() -> None:
    rendered = cache(createMemberSecrets=False)
    assert {ns for ns, _ in names(rendered, "Secret")} == {NAMESPACE}


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([], "compileCache.enabled=true needs at least one group"),
        (
            [{"name": "a", "namespaces": ["x"]}, {"name": "b", "namespaces": ["x"]}],
            'namespace "x" is listed in group "a" and again in group "b"',
        ),
        (
            [{"name": "a", "namespaces": ["x"], "readOnlyNamespaces": ["x"]}],
            'namespace "x" is listed in group "a" and again in group "a"',
        ),
        ([{"name": "a", "namespaces": [NAMESPACE]}], "is the release namespace"),
        (
            [{"name": "a", "namespaces": ["x"]}, {"name": "a", "namespaces": ["y"]}],
            'group name "a" appears twice',
        ),
    ],
)
def test_templates_refuse_groups_that_cannot_hold(groups: list[Any], message: str) -> None:
    assert message in render_error({"compileCache": {"enabled": True, "groups": groups}})


@pytest.mark.parametrize(
    ("values", "path", "reason"),
    [
        (
            {"groups": [{"name": "a-very-long-group-name", "namespaces": ["x"]}]},
            "/compileCache/groups/0/name",
            "maxLength",
        ),
        (
            {"groups": [{"name": "a", "namespaces": ["Bad_NS"]}]},
            "/compileCache/groups/0/namespaces/0",
            "match",
        ),
        (
            {"groups": [{"name": "a", "namespaces": []}]},
            "/compileCache/groups/0/namespaces",
            "minItems",
        ),
        ({"groups": [{"name": "a"}]}, "/compileCache/groups/0", "missing property 'namespaces'"),
        ({"maxmemory": "lots"}, "/compileCache/maxmemory", "does not match pattern"),
        (
            {"client": {"socketTimeoutSeconds": 0}},
            "/compileCache/client/socketTimeoutSeconds",
            "exclusiveMinimum",
        ),
        ({"replicas": 2}, "/compileCache", "additional properties 'replicas' not allowed"),
    ],
)
def test_schema_refuses_bad_cache_values(values: dict[str, Any], path: str, reason: str) -> None:
    message = render_error({"compileCache": {"enabled": True, **values}})
    assert f"at '{path}'" in message, message
    assert reason in message, message


def test_lint_strict_with_every_cache_option(tmp_path: Path) -> None:
    values = {
        "compileCache": {
            "enabled": True,
            "groups": GROUPS,
            "metrics": {"enabled": True},
            "persistence": {"enabled": True},
            "podDisruptionBudget": {"enabled": True},
        }
    }
    done = helm("lint", "--strict", str(CHART), *values_args(values, tmp_path), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


def agent_env(rendered: Rendered) -> dict[str, dict[str, Any]]:
    [daemonset] = rendered.all("DaemonSet")
    return {e["name"]: e for e in container(daemonset, "agent").get("env", [])}


def test_agent_gets_each_groups_url_by_reference_only() -> None:
    """The agent proves every group's cache: one secretKeyRef per group from the agent
    Secret, composed into MAXTUNE_COMPILE_CACHE_URL by the kubelet's $(VAR) expansion."""
    rendered = cache()
    env = agent_env(rendered)
    secret = f"{FULLNAME}-compile-cache-agent"
    for index, group in enumerate(["vision", "team-b"]):
        ref = env[f"MAXTUNE_CACHE_URL_{index}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret, "key": group, "optional": True}
    composed = env["MAXTUNE_COMPILE_CACHE_URL"]["value"]
    assert composed == "vision=$(MAXTUNE_CACHE_URL_0) team-b=$(MAXTUNE_CACHE_URL_1)"
    # What the agent parses once the kubelet expanded it: both groups, usable URLs.
    urls = secret_data(rendered.get("Secret", secret))
    expanded = composed.replace("$(MAXTUNE_CACHE_URL_0)", urls["vision"]).replace(
        "$(MAXTUNE_CACHE_URL_1)", urls["team-b"]
    )
    targets = cacheproof.parse(expanded)
    assert [(t.group, t.url, t.problem) for t in targets] == [
        ("vision", urls["vision"], None),
        ("team-b", urls["team-b"], None),
    ]
    # No password of any group is in the DaemonSet.
    [daemonset] = rendered.all("DaemonSet")
    text = json.dumps(daemonset)
    for name in (f"{FULLNAME}-cache-vision", f"{FULLNAME}-cache-team-b"):
        for password in secret_data(rendered.get("Secret", name)).values():
            assert password not in text


def test_agent_gets_no_cache_without_agent_access_or_cache() -> None:
    for rendered in (cache(agentAccess=False), render({})):
        assert not [n for n in agent_env(rendered) if "CACHE_URL" in n]


def test_agent_skips_groups_whose_credentials_the_chart_does_not_hold() -> None:
    groups = [
        *GROUPS,
        {"name": "ext", "namespaces": ["ext"], "external": {"host": "redis.ext", "port": 6379}},
    ]
    env = agent_env(render({"compileCache": {"enabled": True, "groups": groups}}))
    assert env["MAXTUNE_COMPILE_CACHE_URL"]["value"] == (
        "vision=$(MAXTUNE_CACHE_URL_0) team-b=$(MAXTUNE_CACHE_URL_1)"
    )
    assert "MAXTUNE_CACHE_URL_2" not in env
