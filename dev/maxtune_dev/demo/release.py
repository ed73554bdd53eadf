"""The chart, installed and uninstalled by the real helm, and its post-delete hook run here.

helm is the one the local-plane harness builds from a pinned Go module. It runs with a home of
its own, so a person's repositories and plugins cannot change what it does. kwok completes the
cleanup hook's Job without running anything, so after `helm uninstall` the hook's command runs
here, with the hook's own service account and RBAC (recreated from the release's stored hook
manifests, since helm deletes them once the Job "succeeded").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune_dev.localplane import binaries, paths
from maxtune_dev.localrun import ClusterAccess, kapi, token_kubeconfig, unbound_token

HELM_TIMEOUT_S = 180


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def chart_path() -> Path:
    chart = paths.repo_root() / "charts" / "maxtune"
    if not (chart / "Chart.yaml").is_file():
        raise HelmError(f"no chart at {chart}: run the demo from a maxtune checkout")
    return chart


def helm(*args: str, kubeconfig: Path, timeout_s: float = HELM_TIMEOUT_S) -> str:
    home = Path(tempfile.gettempdir()) / f"maxtune-helm-home-{os.getuid()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(kubeconfig),
    }
    done = subprocess.run(
        [str(binaries().helm), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


@dataclass
class Release:
    """One helm release of the chart."""

    name: str
    namespace: str
    kubeconfig: Path
    values: dict[str, Any]
    installed: bool = False

    @property
    def fullname(self) -> str:
        """The chart's resource-name prefix (maxtune.fullname in _helpers.tpl)."""
        return self.name if "maxtune" in self.name else f"{self.name}-maxtune"

    def command(self) -> str:
        """The helm command line a person would type for this install."""
        return (
            f"helm install {self.name} charts/maxtune --namespace {self.namespace} -f values.json"
        )

    def install(self, folder: Path) -> str:
        path = folder / "values.json"
        path.write_text(json.dumps(self.values, indent=2))
        self.installed = True  # even a failed install may leave a release to uninstall
        notes = helm(
            "install",
            self.name,
            str(chart_path()),
            "--namespace",
            self.namespace,
            "-f",
            str(path),
            kubeconfig=self.kubeconfig,
        )
        return notes

    def hook_manifests(self, hook: str) -> list[dict[str, Any]]:
        """The release's objects of one kind of hook (e.g. post-delete), as helm stored them."""
        text = helm(
            "get", "hooks", self.name, "--namespace", self.namespace, kubeconfig=self.kubeconfig
        )
        return [
            o
            for o in yaml.safe_load_all(text)
            if o and o["metadata"].get("annotations", {}).get("helm.sh/hook") == hook
        ]

    def uninstall(self) -> None:
        if self.installed:
            helm(
                "uninstall",
                self.name,
                "--namespace",
                self.namespace,
                "--wait",
                "--timeout",
                "90s",
                "--ignore-not-found",
                kubeconfig=self.kubeconfig,
            )
            self.installed = False


def run_cleanup_hook(
    api: ApiClient, cluster: ClusterAccess, hooks: list[dict[str, Any]], folder: Path
) -> str:
    """Run the post-delete Job's command as its pod would: its account, its RBAC, its args."""
    objects = {o["kind"]: o for o in hooks}
    if "Job" not in objects:
        return "no cleanup hook in this release (cleanup.enabled=false)"
    job = objects["Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    namespace = job["metadata"]["namespace"]
    core, rbac = kapi("CoreV1Api", api), kapi("RbacAuthorizationV1Api", api)
    account = objects["ServiceAccount"]
    _create(lambda: core.create_namespaced_service_account(namespace, account))
    _create(lambda: rbac.create_cluster_role(objects["ClusterRole"]))
    _create(lambda: rbac.create_cluster_role_binding(objects["ClusterRoleBinding"]))
    try:
        token = unbound_token(api, namespace, account["metadata"]["name"])
        kubeconfig = token_kubeconfig(cluster, token, folder / "cleanup.kubeconfig")
        command = list(container["command"])
        if command[0] == "maxtune":
            command[0] = str(Path(sys.executable).with_name("maxtune"))
        argv = [*command, *container.get("args", []), "--kubeconfig", str(kubeconfig)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise HelmError(f"the cleanup hook's command failed:\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr
    finally:
        _delete(lambda: rbac.delete_cluster_role_binding(_name(objects["ClusterRoleBinding"])))
        _delete(lambda: rbac.delete_cluster_role(_name(objects["ClusterRole"])))
        _delete(lambda: core.delete_namespaced_service_account(_name(account), namespace))


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _create(call: Any) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status != 409:  # left by an interrupted run: the same object, reuse it
            raise


def _delete(call: Any) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status != 404:
            raise
