"""The chart's own cache servers, run here: its redis.conf, its ACL script, its Secrets.

`helm template` renders the chart; the ACL file is built by the chart's own make-acl.sh (run
with /bin/sh over the rendered Secret's keys, as the init container runs it over the mounted
Secret); Debian's redis-server runs the chart's redis.conf, with only port, address, folder and
the ACL file's path overridden on its command line. What the tests prove about isolation is
then proved of what the chart deploys, not of a configuration written for the tests.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxtune_dev.localplane.redisserver import RedisServer
from tests.chart.helmkit import FULLNAME, Rendered, render

CONFIG = f"{FULLNAME}-cache-config"
DIRECTORY = f"{FULLNAME}-compile-cache"
MEMBER_SECRET = "maxtune-compile-cache"
# The group most tests compile through: `train` writes, `serve` only reads.
ML_GROUPS = [{"name": "ml", "namespaces": ["train"], "readOnlyNamespaces": ["serve"]}]


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


@dataclass(frozen=True)
class ChartCache:
    """One render of the chart with compileCache on."""

    rendered: Rendered

    def config_file(self, name: str) -> str:
        data: dict[str, str] = self.rendered.get("ConfigMap", CONFIG)["data"]
        return data[name]

    def server_secret(self, group: str) -> dict[str, str]:
        return decoded(self.rendered.get("Secret", f"{FULLNAME}-cache-{group}"))

    def member_secret(self, namespace: str) -> dict[str, str]:
        found = [
            s
            for s in self.rendered.all("Secret")
            if s["metadata"]["name"] == MEMBER_SECRET and s["metadata"]["namespace"] == namespace
        ]
        assert len(found) == 1, f"{len(found)} member Secrets in {namespace}"
        return decoded(found[0])

    def directory(self) -> dict[str, Any]:
        data = self.rendered.get("ConfigMap", DIRECTORY)["data"]
        parsed: dict[str, Any] = json.loads(data["directory.json"])
        return parsed

    def build_acl(self, group: str, folder: Path) -> str:
        """The chart's make-acl.sh over the group's Secret keys, as the init container runs it."""
        return run_make_acl(self.config_file("make-acl.sh"), self.server_secret(group), folder)

    def server(self, group: str, folder: Path) -> RedisServer:
        """The group's Redis as the chart configures it (not started)."""
        acl = self.build_acl(group, folder / "acl-build")
        return RedisServer(
            self.config_file("redis.conf"), acl, workdir=folder / "server", name=f"cache-{group}"
        )


def run_make_acl(script: str, keys: dict[str, str], folder: Path) -> str:
    secrets = folder / "secrets"
    secrets.mkdir(parents=True)
    for key, value in keys.items():
        (secrets / key).write_text(value)
    (folder / "make-acl.sh").write_text(script)
    out = folder / "users.acl"
    done = subprocess.run(
        ["/bin/sh", str(folder / "make-acl.sh"), str(secrets), str(out)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make-acl.sh exited {done.returncode}: {done.stderr}")
    return out.read_text()


def render_cache(compile_cache: dict[str, Any]) -> ChartCache:
    return ChartCache(render({"compileCache": {"enabled": True, **compile_cache}}))


def local_url(url: str, port: int) -> str:
    """A Secret's URL with the cluster host swapped for this machine's server (the rest -
    user, password, timeouts - exactly as the chart wrote it)."""
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))
