"""The CRDs through `helm upgrade` on the real API server: new fields arrive, uninstall keeps them.

An "older chart" is this chart copied with one CRD field taken out (AutotunePolicy's
spec.staleAfterSeconds). The API server prunes fields its stored schema does not know, so an
AutotunePolicy created with that field loses it under the old CRD and keeps it once `helm
upgrade` to the real chart has replaced the CRD: that is what a user would see.

Two ways in: an older release whose CRDs were already templates (the chart's way from now
on), and an older release whose CRDs came from Helm's crds/ folder (this chart's way before),
which Helm never upgrades and which the new release must first be allowed to adopt (the
commands in the chart README). This module runs a plane of its own: Helm refuses CRDs owned by
another release, and the shared plane's CRDs belong to the other tests.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from maxtune.contract import crdgen
from maxtune.contract.models import AutotunePolicy
from maxtune.contract.names import GROUP, VERSION
from maxtune_dev.localplane import LocalPlane, wait_for
from tests.chart.helmkit import CHART, HelmError, helm
from tests.chart.localrun import kapi

pytestmark = [pytest.mark.plane, pytest.mark.slow]

POLICIES = "autotunepolicies.maxtune.io"
PROFILES = "gpunodeprofiles.maxtune.io"
REMOVED = "staleAfterSeconds"
NAMESPACE = "maxtune-system"
# Nothing in these releases runs (no node, no processes): the CRDs are what is tested.
VALUES = {"cleanup": {"enabled": False}}


@pytest.fixture(scope="module")
def own_plane() -> Iterator[LocalPlane]:
    with LocalPlane() as plane:
        yield plane


@pytest.fixture(scope="module")
def api(own_plane: LocalPlane) -> Iterator[ApiClient]:
    with own_plane.api_client() as client:
        kapi("CoreV1Api", client).create_namespace({"metadata": {"name": NAMESPACE}})
        yield client


def older_policy_crd() -> dict[str, Any]:
    crd = crdgen.crd_for(AutotunePolicy)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"][REMOVED]
    return crd


def older_chart(folder: Path, *, crds_folder: bool) -> Path:
    """This chart at version 0.0.9 without the field; its CRDs in crds/ or in templates/crds/."""
    chart = folder / "maxtune"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.0.9"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    name = f"{GROUP}_autotunepolicies.yaml"
    if crds_folder:
        shutil.rmtree(chart / "templates" / "crds")
        (chart / "crds").mkdir()
        for file, text in crdgen.rendered_files().items():
            (chart / "crds" / file).write_text(text)
        (chart / "crds" / name).write_text(yaml.safe_dump(older_policy_crd()))
    else:
        (chart / "templates" / "crds" / name).write_text(
            crdgen.chart_template_of(older_policy_crd())
        )
    return chart


def run_helm(
    plane: LocalPlane, folder: Path, *args: str, values: dict[str, Any] | None = None
) -> str:
    path = folder / f"values-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({**VALUES, **(values or {})}))
    done = helm(*args, "--namespace", NAMESPACE, "-f", str(path), kubeconfig=plane.kubeconfig)
    return done.stdout


def stored_fields(api: ApiClient) -> set[str]:
    crd = kapi("ApiextensionsV1Api", api).read_custom_resource_definition(POLICIES)
    schema = crd.spec.versions[0].schema.open_apiv3_schema
    return set(schema.properties["spec"].properties)


def policy_keeps_the_field(api: ApiClient) -> bool:
    """Create a policy that sets the field and read back whether the API server kept it."""
    custom = kapi("CustomObjectsApi", api)
    name = f"p-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AutotunePolicy",
        "metadata": {"name": name},
        "spec": {REMOVED: 120},
    }
    created = custom.create_cluster_custom_object(GROUP, VERSION, "autotunepolicies", body)
    custom.delete_cluster_custom_object(GROUP, VERSION, "autotunepolicies", name)
    return REMOVED in created["spec"]


def crd_names(api: ApiClient) -> set[str]:
    listed = kapi("ApiextensionsV1Api", api).list_custom_resource_definition().items
    return {c.metadata.name for c in listed if c.metadata.name.endswith(f".{GROUP}")}


def wait_established(api: ApiClient) -> None:
    ext = kapi("ApiextensionsV1Api", api)

    def established() -> bool:
        for name in (POLICIES, PROFILES):
            status = ext.read_custom_resource_definition(name).status
            conditions = (status.conditions or []) if status else []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for(established, timeout_s=60, what="maxtune CRDs Established")


def delete_crds(api: ApiClient) -> None:
    ext = kapi("ApiextensionsV1Api", api)
    for name in crd_names(api):
        ext.delete_custom_resource_definition(name)
    wait_for(lambda: not crd_names(api), timeout_s=60, what="CRDs gone")


def test_upgrade_brings_a_new_crd_field_and_uninstall_keeps_the_crds(
    own_plane: LocalPlane, api: ApiClient, tmp_path: Path
) -> None:
    old = older_chart(tmp_path, crds_folder=False)
    run_helm(own_plane, tmp_path, "install", "mt", str(old))
    wait_established(api)
    assert REMOVED not in stored_fields(api)
    assert not policy_keeps_the_field(api)  # pruned: the stored schema does not know it

    notes = run_helm(own_plane, tmp_path, "upgrade", "mt", str(CHART))
    assert "The CRDs stay (helm.sh/resource-policy: keep)" in notes
    wait_for(lambda: REMOVED in stored_fields(api), timeout_s=30, what="the upgraded CRD")
    assert wait_for(lambda: policy_keeps_the_field(api), timeout_s=30, what="field kept")
    crd = kapi("ApiextensionsV1Api", api).read_custom_resource_definition(POLICIES)
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert crd.metadata.labels["helm.sh/chart"] == f"maxtune-{chart_version}"
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"

    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AutotunePolicy"}
    custom = kapi("CustomObjectsApi", api)
    custom.create_cluster_custom_object(
        GROUP, VERSION, "autotunepolicies", {**policy, "metadata": {"name": "default"}}
    )
    out = helm("uninstall", "mt", "--namespace", NAMESPACE, kubeconfig=own_plane.kubeconfig)
    assert "kept due to the resource policy" in out.stdout + out.stderr
    assert crd_names(api) == {POLICIES, PROFILES}
    kept = custom.get_cluster_custom_object(GROUP, VERSION, "autotunepolicies", "default")
    assert kept["metadata"]["name"] == "default"  # the user's policy outlived the release

    # The same release installs again over the kept CRDs; with crds.keep=false they go with it.
    notes = run_helm(
        own_plane, tmp_path, "install", "mt", str(CHART), values={"crds": {"keep": False}}
    )
    assert "The CRDs go with the release (crds.keep=false)" in notes
    helm("uninstall", "mt", "--namespace", NAMESPACE, kubeconfig=own_plane.kubeconfig)
    wait_for(lambda: not crd_names(api), timeout_s=60, what="CRDs deleted with the release")


def test_crds_from_the_old_crds_folder_are_adopted_then_upgraded(
    own_plane: LocalPlane, api: ApiClient, tmp_path: Path
) -> None:
    if crd_names(api):
        delete_crds(api)
    old = older_chart(tmp_path, crds_folder=True)
    run_helm(own_plane, tmp_path, "install", "mt2", str(old))
    wait_established(api)
    assert REMOVED not in stored_fields(api)

    # Helm created them from crds/, outside the release: it will not take them over unasked.
    with pytest.raises(HelmError) as refused:
        run_helm(own_plane, tmp_path, "upgrade", "mt2", str(CHART))
    assert "invalid ownership metadata" in refused.value.stderr
    assert REMOVED not in stored_fields(api)

    # The README's adoption step (kubectl label/annotate), done through the API.
    ext = kapi("ApiextensionsV1Api", api)
    for name in (POLICIES, PROFILES):
        ext.patch_custom_resource_definition(
            name,
            {
                "metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {
                        "meta.helm.sh/release-name": "mt2",
                        "meta.helm.sh/release-namespace": NAMESPACE,
                    },
                }
            },
        )
    run_helm(own_plane, tmp_path, "upgrade", "mt2", str(CHART))
    wait_for(lambda: REMOVED in stored_fields(api), timeout_s=30, what="the adopted CRD upgraded")
    assert wait_for(lambda: policy_keeps_the_field(api), timeout_s=30, what="field kept")
    helm("uninstall", "mt2", "--namespace", NAMESPACE, kubeconfig=own_plane.kubeconfig)
    assert crd_names(api) == {POLICIES, PROFILES}


def test_a_second_release_is_refused_the_crds_and_told_why(
    own_plane: LocalPlane, api: ApiClient, tmp_path: Path
) -> None:
    """One release owns the CRDs; another installs with crds.enabled=false (README)."""
    if not crd_names(api):
        run_helm(own_plane, tmp_path, "install", "owner", str(CHART))
        wait_established(api)
    try:
        run_helm(own_plane, tmp_path, "install", "second", str(CHART))
    except HelmError as exc:
        assert "exists and cannot be imported into the current release" in exc.stderr
    else:
        raise AssertionError("a second release took over the CRDs of another")
    finally:
        with contextlib.suppress(HelmError):  # the failed install may have left no release
            helm("uninstall", "second", "--namespace", NAMESPACE, kubeconfig=own_plane.kubeconfig)
    run_helm(
        own_plane, tmp_path, "install", "second", str(CHART), values={"crds": {"enabled": False}}
    )
    helm("uninstall", "second", "--namespace", NAMESPACE, kubeconfig=own_plane.kubeconfig)
    with pytest.raises(ApiException):
        kapi("CoreV1Api", api).read_namespaced_service("second-maxtune-webhook", NAMESPACE)
