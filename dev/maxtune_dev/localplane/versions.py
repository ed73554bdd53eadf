"""Pinned versions of the control-plane components and the pure rules derived from them.

Each component lists its candidates in order of preference: the pin first, then
neighbouring releases that the Go module proxy serves. The builder takes the
first candidate that resolves and builds (docs/decisions/0001 says why these).
Everything here is pure so it can be unit-tested without Go or a network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

GO_DIRECTIVE = "1.26.0"


@dataclass(frozen=True)
class Component:
    """One Go module we build binaries from.

    `packages` pairs each main package with the binary name it is installed
    under; all packages of a component are built by one `go build` so that the
    three Kubernetes binaries share their compile work.
    """

    name: str
    module: str
    candidates: tuple[str, ...]
    packages: tuple[tuple[str, str], ...]

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(binary for _, binary in self.packages)


ETCD = Component(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    candidates=("v3.6.16", "v3.6.15", "v3.6.14", "v3.6.13"),
    # The server module's root package is etcd's own `main` (a wrapper of etcdmain).
    packages=(("go.etcd.io/etcd/server/v3", "etcd"),),
)
KUBERNETES = Component(
    name="kubernetes",
    module="k8s.io/kubernetes",
    candidates=("v1.36.3", "v1.36.1", "v1.35.4", "v1.34.4"),
    packages=(
        ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
        ("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
        ("k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
    ),
)
KWOK = Component(
    name="kwok",
    module="sigs.k8s.io/kwok",
    candidates=("v0.8.0", "v0.7.0"),
    packages=(("sigs.k8s.io/kwok/cmd/kwok", "kwok"),),
)
HELM = Component(
    name="helm",
    module="helm.sh/helm/v3",
    candidates=("v3.21.4", "v3.21.3", "v3.20.2"),
    packages=(("helm.sh/helm/v3/cmd/helm", "helm"),),
)

COMPONENTS: tuple[Component, ...] = (ETCD, KUBERNETES, KWOK, HELM)

# Not part of the plane: generates the chart README from values.yaml (`make docs`).
HELM_DOCS = Component(
    name="helm-docs",
    module="github.com/norwoodj/helm-docs",
    candidates=("v1.14.2",),
    packages=(("github.com/norwoodj/helm-docs/cmd/helm-docs", "helm-docs"),),
)

# Not part of the plane: the webhook benchmark's load generator (open loop, HTTP/1.1 and
# HTTP/2, exact latencies), so that the client is not the bottleneck (benchmarks/vegeta.py).
VEGETA = Component(
    name="vegeta",
    module="github.com/tsenart/vegeta/v12",
    candidates=("v12.13.0",),
    packages=(("github.com/tsenart/vegeta/v12", "vegeta"),),
)

_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    """A plain release tag `vMAJOR.MINOR.PATCH` (pre-releases are never pinned)."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


def parse_version(tag: str) -> Version:
    match = _SEMVER.match(tag.strip())
    if match is None:
        raise ValueError(f"not a release tag vMAJOR.MINOR.PATCH: {tag!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return Version(major, minor, patch)


def staging_version(kube: str) -> str:
    """The tag its staging modules carry: Kubernetes v1.X.Y publishes k8s.io/api v0.X.Y etc."""
    version = parse_version(kube)
    return f"v0.{version.minor}.{version.patch}"


_REPLACE_LINE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\S+)(?:\s+(\S+))?\s*$")


def staging_replaces(kubernetes_gomod: str, kube_version: str) -> dict[str, str]:
    """Replace directives for a module that depends on k8s.io/kubernetes.

    Kubernetes' own go.mod requires its staging modules at `v0.0.0` and points
    them at `./staging/src/...`. Replaces of a dependency are ignored by Go, so
    the consuming module must map each of them to its published tag itself.
    Only local-path (staging) replaces are carried over; the published tag of
    each is derived from the Kubernetes version.
    """
    target = staging_version(kube_version)
    replaces: dict[str, str] = {}
    in_block = False
    for raw in kubernetes_gomod.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("replace ("):
            in_block = True
            continue
        if in_block and stripped == ")":
            in_block = False
            continue
        if not (in_block or stripped.startswith("replace ")):
            continue
        match = _REPLACE_LINE.match(stripped)
        if match is None:
            continue
        module, new_path, new_version = match.groups()
        if new_version is None and new_path.startswith("./staging/"):
            replaces[module] = target
    return replaces


def render_gomod(
    module: str,
    requires: Mapping[str, str],
    replaces: Mapping[str, str] | None = None,
    go_directive: str = GO_DIRECTIVE,
) -> str:
    """A go.mod for a throwaway build module (`go get` fills in the rest)."""
    lines = [f"module {module}", "", f"go {go_directive}", ""]
    if requires:
        lines.append("require (")
        lines.extend(f"\t{path} {version}" for path, version in sorted(requires.items()))
        lines.extend([")", ""])
    if replaces:
        lines.append("replace (")
        lines.extend(f"\t{path} => {path} {version}" for path, version in sorted(replaces.items()))
        lines.extend([")", ""])
    return "\n".join(lines)


def kube_ldflags(kube_version: str, build_date: str, git_commit: str | None = None) -> list[str]:
    """The `-X` flags that Kubernetes' hack/lib/version.sh sets, so /version tells the truth.

    version.sh sets each key in both client-go/pkg/version and
    component-base/version; gitMinor carries no `+` because these are release
    sources, untouched.
    """
    version = parse_version(kube_version)
    values = {
        "buildDate": build_date,
        "gitVersion": kube_version,
        "gitMajor": str(version.major),
        "gitMinor": str(version.minor),
        "gitTreeState": "clean",
    }
    if git_commit:
        values["gitCommit"] = git_commit
    flags: list[str] = []
    for key, value in values.items():
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            flags.append(f"-X {package}.{key}={value}")
    return flags


def helm_ldflags(helm_version: str, client_go_version: str) -> list[str]:
    """Helm's Makefile flags: its version, and the Kubernetes version its charts default to."""
    client_go = parse_version(client_go_version)
    flags = [
        f"-X helm.sh/helm/v3/internal/version.version={helm_version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    for package in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags.append(f"-X {package}.k8sVersionMajor=1")
        flags.append(f"-X {package}.k8sVersionMinor={client_go.minor}")
    return flags


def etcd_ldflags(etcd_version: str) -> list[str]:
    """etcd prints GitSHA in --version; a tag is more useful than 'Not provided'."""
    return [f"-X go.etcd.io/etcd/api/v3/version.GitSHA={etcd_version}"]
