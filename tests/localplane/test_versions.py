"""Pure rules of the version pins: tags, staging replaces, go.mod and ldflags."""

from __future__ import annotations

import pytest

from maxtune_dev.localplane.versions import (
    COMPONENTS,
    ETCD,
    HELM,
    KUBERNETES,
    KWOK,
    Version,
    helm_ldflags,
    kube_ldflags,
    parse_version,
    render_gomod,
    staging_replaces,
    staging_version,
)

# The shape of k8s.io/kubernetes' go.mod (v1.36.3, abridged).
KUBERNETES_GOMOD = """\
module k8s.io/kubernetes

go 1.26.0

require (
\tgithub.com/spf13/cobra v1.10.2
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // the client
\tgithub.com/example/forked => github.com/example/forked v1.2.3
)

replace k8s.io/kms => ./staging/src/k8s.io/kms
replace github.com/other/thing v1.0.0 => ../thing
"""


def test_parse_version_accepts_release_tags_only() -> None:
    assert parse_version("v1.36.3") == Version(1, 36, 3)
    assert str(parse_version(" v3.6.16 ")) == "v3.6.16"
    assert parse_version("v1.35.4") < parse_version("v1.36.1")
    for bad in ("1.36.3", "v1.36", "v1.36.3-rc.0", "latest"):
        with pytest.raises(ValueError, match="release tag"):
            parse_version(bad)


def test_staging_version_follows_the_kubernetes_minor_and_patch() -> None:
    assert staging_version("v1.36.3") == "v0.36.3"
    assert staging_version("v1.34.4") == "v0.34.4"


def test_staging_replaces_keeps_only_local_staging_paths() -> None:
    assert staging_replaces(KUBERNETES_GOMOD, "v1.36.3") == {
        "k8s.io/api": "v0.36.3",
        "k8s.io/client-go": "v0.36.3",
        "k8s.io/kms": "v0.36.3",
    }


def test_render_gomod_writes_module_go_and_replaces() -> None:
    text = render_gomod(
        "maxtune.local/build/kubernetes",
        {"k8s.io/kubernetes": "v1.36.3"},
        {"k8s.io/api": "v0.36.3"},
    )
    lines = text.splitlines()
    assert lines[0] == "module maxtune.local/build/kubernetes"
    assert "go 1.26.0" in lines
    assert "\tk8s.io/kubernetes v1.36.3" in lines
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in lines


def test_kube_ldflags_set_both_version_packages_like_version_sh() -> None:
    flags = kube_ldflags("v1.36.3", "2026-11-25T00:00:00Z")
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        assert f"-X {package}.gitVersion=v1.36.3" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=36" in flags
        assert f"-X {package}.gitTreeState=clean" in flags
        assert f"-X {package}.buildDate=2026-11-25T00:00:00Z" in flags
    assert not any("gitCommit" in flag for flag in flags)
    assert "-X k8s.io/component-base/version.gitCommit=abc" in kube_ldflags(
        "v1.36.3", "d", git_commit="abc"
    )


def test_helm_ldflags_take_the_kubernetes_minor_from_client_go() -> None:
    flags = helm_ldflags("v3.21.4", "v0.35.2")
    assert "-X helm.sh/helm/v3/internal/version.version=v3.21.4" in flags
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=35" in flags


def test_pins_come_first_and_every_candidate_is_a_release_tag() -> None:
    assert KUBERNETES.candidates[0] == "v1.36.3"
    assert ETCD.candidates[0].startswith("v3.6.")
    assert KWOK.candidates[0] == "v0.8.0"
    assert HELM.candidates[0].startswith("v3.21.")
    for component in COMPONENTS:
        for tag in component.candidates:
            parse_version(tag)
    assert KUBERNETES.binaries == ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
