"""A cache entry is code: who may read and write it, tested on the chart's real servers.

Two sharing groups rendered by the chart (vision: cv-train and cv-ci write, cv-serve only
reads; team-b alone), each run as Debian's redis-server with the chart's redis.conf and the ACL
file its own script builds. Clients connect through redis-py's `Redis.from_url`, torch's own
path, with the URLs the chart put in each namespace's Secret.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from maxtune_dev.localplane.redisserver import TORCH_CACHE_RULES, RedisServer, ping_reply, tool_env
from tests.cache.cachekit import ChartCache, local_url, render_cache, run_make_acl

GROUPS = [
    {"name": "vision", "namespaces": ["cv-train", "cv-ci"], "readOnlyNamespaces": ["cv-serve"]},
    {"name": "team-b", "namespaces": ["team-b"]},
]
KEY = "pt2:fx-graph-v1::fabc:c1"  # the shape of torch's keys (remote_cache.RedisRemoteCache)
# redis-py retries a failed AUTH (a ConnectionError) three times with backoff, seconds each;
# clients expected to fail skip that.
ONCE = Retry(NoBackoff(), 0)


@pytest.fixture(scope="module")
def chart() -> ChartCache:
    return render_cache({"groups": GROUPS, "metrics": {"enabled": True}})


@pytest.fixture(scope="module")
def servers(
    chart: ChartCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RedisServer]]:
    started: dict[str, RedisServer] = {}
    try:
        for group in ("vision", "team-b"):
            folder = tmp_path_factory.mktemp(group)
            started[group] = chart.server(group, folder).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def client(
    chart: ChartCache, namespace: str, server: RedisServer, retry: Retry | None = None
) -> redis.Redis:
    url = local_url(chart.member_secret(namespace)["url"], server.port)
    return redis.Redis.from_url(url, **({"retry": retry} if retry else {}))


def service(chart: ChartCache, group: str, user: str, server: RedisServer) -> redis.Redis:
    password = chart.server_secret(group)[user]
    return redis.Redis(host="127.0.0.1", port=server.port, username=user, password=password)


def test_members_read_and_write_their_groups_entries(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    vision = servers["vision"]
    train, ci = client(chart, "cv-train", vision), client(chart, "cv-ci", vision)
    assert train.set(KEY, b"compiled by cv-train")
    assert ci.get(KEY) == b"compiled by cv-train"
    serve = client(chart, "cv-serve", vision)
    assert serve.get(KEY) == b"compiled by cv-train"
    with pytest.raises(redis.exceptions.NoPermissionError):
        serve.set(KEY, b"a read-only namespace cannot change what others run")
    assert ci.get(KEY) == b"compiled by cv-train"


def test_another_groups_credentials_can_neither_read_nor_overwrite(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    vision, team_b = servers["vision"], servers["team-b"]
    client(chart, "cv-train", vision).set(KEY, b"vision's entry")
    client(chart, "team-b", team_b).set(KEY, b"team-b's entry")
    # team-b's pods, pointed at vision's Redis: no such user there.
    intruder = client(chart, "team-b", vision, retry=ONCE)
    with pytest.raises(redis.exceptions.AuthenticationError):
        intruder.get(KEY)
    with pytest.raises(redis.exceptions.AuthenticationError):
        intruder.set(KEY, b"poisoned")
    # A vision namespace's password on team-b's Redis, under either user name.
    b_user = chart.member_secret("team-b")["username"]
    stolen = chart.member_secret("cv-train")["password"]
    for user in (chart.member_secret("cv-train")["username"], b_user):
        other = redis.Redis(
            host="127.0.0.1", port=team_b.port, username=user, password=stolen, retry=ONCE
        )
        with pytest.raises(redis.exceptions.AuthenticationError):
            other.set(KEY, b"poisoned")
    assert client(chart, "cv-ci", vision).get(KEY) == b"vision's entry"
    assert client(chart, "team-b", team_b).get(KEY) == b"team-b's entry"


def test_anonymous_access_is_refused(chart: ChartCache, servers: dict[str, RedisServer]) -> None:
    for server in servers.values():
        assert ping_reply(server.port).startswith("-NOAUTH")
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=ONCE)
        for call in (lambda a=anonymous: a.get(KEY), lambda a=anonymous: a.set(KEY, b"x")):
            with pytest.raises(redis.exceptions.AuthenticationError):
                call()
        for password in ("", "nopass", "default"):
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(
                    host="127.0.0.1",
                    port=server.port,
                    username="default",
                    password=password,
                    retry=ONCE,
                ).ping()


COMMANDS_REFUSED = [
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("DEL", KEY),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("EVAL", "return 1", "0"),
    ("SELECT", "1"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "evil", "on", ">evil-password-1234", "+@all", "~*"),
    ("CLIENT", "LIST"),
    ("INFO",),
    ("DBSIZE",),
    ("MODULE", "LIST"),
    ("SHUTDOWN", "NOSAVE"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("PUBLISH", "c", "m"),
]


def test_members_run_only_get_and_set_on_torch_keys(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    member = client(chart, "cv-train", servers["vision"])
    refused = []
    for command in COMMANDS_REFUSED:
        with pytest.raises(redis.exceptions.NoPermissionError):
            member.execute_command(*command)
        refused.append(command[0])
    with pytest.raises(redis.exceptions.NoPermissionError):
        member.set("not-torch:key", b"x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        member.get("not-torch:key")
    assert len(refused) == len(COMMANDS_REFUSED)
    # DEBUG is off in the server itself (enable-debug-command no), before any ACL is asked.
    with pytest.raises(redis.exceptions.ResponseError, match="DEBUG command not allowed"):
        member.execute_command("DEBUG", "SLEEP", "0")
    assert member.set("pt2:any-cache::k:c1", b"v") and member.get("pt2:any-cache::k:c1") == b"v"


def test_service_users_do_only_their_job(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    vision = servers["vision"]
    probe = service(chart, "vision", "svc-probe", vision)
    assert probe.ping() is True
    with pytest.raises(redis.exceptions.NoPermissionError):
        probe.get(KEY)
    exporter = service(chart, "vision", "svc-exporter", vision)
    memory = exporter.info("memory")
    # The chart's cache settings, read back from the running server.
    assert memory["maxmemory_policy"] == "allkeys-lru"
    assert memory["maxmemory"] == 1024**3  # compileCache.maxmemory: 1gb
    assert exporter.config_get("maxmemory") == {"maxmemory": str(1024**3)}
    for denied in (lambda: exporter.get(KEY), lambda: exporter.set(KEY, b"x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()
    agent = service(chart, "vision", "svc-agent", vision)
    assert agent.set("pt2:agent-probe::k:c1", b"v") and agent.get("pt2:agent-probe::k:c1") == b"v"


def test_acl_file_holds_hashes_not_passwords(chart: ChartCache, tmp_path: Path) -> None:
    secret = chart.server_secret("vision")
    acl = chart.build_acl("vision", tmp_path)
    assert set(secret) == {
        "ns-cv-train",
        "ns-cv-ci",
        "ro-cv-serve",
        "svc-agent",
        "svc-probe",
        "svc-exporter",
    }
    for password in secret.values():
        assert len(password) == 40 and password.isalnum()
        assert password not in acl
    users = dict(re.findall(r"^user (\S+) (.*)$", acl, flags=re.MULTILINE))
    assert users["default"] == "off resetpass resetkeys resetchannels -@all"
    assert set(users) == {"default", *secret}
    assert all(re.match(r"on #[0-9a-f]{64} ", users[name]) for name in secret)


def test_make_acl_refuses_weak_or_missing_passwords(chart: ChartCache, tmp_path: Path) -> None:
    script = chart.config_file("make-acl.sh")
    with pytest.raises(RuntimeError, match="ns-team-x has fewer than 16 characters"):
        run_make_acl(script, {"ns-team-x": "short"}, tmp_path / "short")
    with pytest.raises(RuntimeError, match="no users in"):
        run_make_acl(script, {"unrelated-key": "x" * 20}, tmp_path / "none")


def test_secret_url_and_webhook_template_both_authenticate(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    """The two ways a pod can get its URL without the password in its manifest: the Secret's
    `url` key (valueFrom.secretKeyRef), or the directory's template, whose $(VAR) kubelet fills
    from an earlier env var that is itself a secretKeyRef of `password`."""
    vision = servers["vision"]
    secret = chart.member_secret("cv-ci")
    entry = chart.directory()["namespaces"]["cv-ci"]
    assert entry["secretName"] == "maxtune-compile-cache" and entry["username"] == "ns-cv-ci"
    assert "$(MAXTUNE_CACHE_PASSWORD)" in entry["urlTemplate"]
    assert secret["password"] not in entry["urlTemplate"]
    expanded = entry["urlTemplate"].replace("$(MAXTUNE_CACHE_PASSWORD)", secret["password"])
    assert expanded == secret["url"]
    assert "socket_connect_timeout=2" in expanded and "socket_timeout=5" in expanded
    connection = redis.Redis.from_url(local_url(expanded, vision.port))
    kwargs = connection.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 5.0 and kwargs["socket_connect_timeout"] == 2.0
    assert kwargs["username"] == "ns-cv-ci"
    assert connection.set("pt2:url-check::k:c1", b"v")


def test_chart_and_harness_grant_cache_users_the_same_rights(chart: ChartCache) -> None:
    """The benchmarks' servers (redisserver.TORCH_CACHE_RULES) and the chart's agree."""
    assert f"cache_rules='{TORCH_CACHE_RULES}'" in chart.config_file("make-acl.sh")


def test_readiness_probe_command_answers_as_the_probe_user(
    chart: ChartCache, servers: dict[str, RedisServer]
) -> None:
    """The Deployment's own probe command, run with Debian's redis-cli against the server."""
    vision = servers["vision"]
    deployment = chart.rendered.get("Deployment", "mt-maxtune-cache-vision")
    redis_container = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "redis"
    )
    command = redis_container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["/bin/sh", "-c"] and "-p 6379" in command[2]
    script = command[2].replace("-p 6379", f"-h 127.0.0.1 -p {vision.port}")
    env = tool_env(vision.binary)
    env["PATH"] = f"{vision.cli_binary.parent}:{env['PATH']}"
    ok = subprocess.run(
        ["/bin/sh", "-c", script],
        env={**env, "REDISCLI_AUTH": chart.server_secret("vision")["svc-probe"]},
        timeout=30,
        check=False,
    )
    assert ok.returncode == 0
    wrong = subprocess.run(
        ["/bin/sh", "-c", script],
        env={**env, "REDISCLI_AUTH": "not-the-probe-password"},
        timeout=30,
        check=False,
    )
    assert wrong.returncode != 0
