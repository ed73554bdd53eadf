"""The CRDs as chart templates: upgraded with the release, kept on uninstall unless asked."""

from __future__ import annotations

import yaml

from maxtune.contract import crdgen
from tests.chart.helmkit import render

KEEP = "helm.sh/resource-policy"


def plain_crds() -> dict[str, dict[str, object]]:
    return {
        crd["metadata"]["name"]: crd
        for crd in (yaml.safe_load(text) for text in crdgen.rendered_files().values())
    }


def test_default_installs_both_crds_as_generated_with_release_labels_and_keep() -> None:
    rendered = {c["metadata"]["name"]: c for c in render().all("CustomResourceDefinition")}
    plain = plain_crds()
    assert (
        set(rendered) == set(plain) == {"gpunodeprofiles.maxtune.io", "autotunepolicies.maxtune.io"}
    )
    for name, crd in rendered.items():
        assert crd["spec"] == plain[name]["spec"], name  # the models' schema, untouched by Helm
        labels = crd["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "mt"
        assert labels["app.kubernetes.io/part-of"] == "maxtune"
        assert crd["metadata"]["annotations"] == {KEEP: "keep"}


def test_keep_off_lets_uninstall_delete_them() -> None:
    for crd in render({"crds": {"keep": False}}).all("CustomResourceDefinition"):
        assert KEEP not in crd["metadata"].get("annotations", {})


def test_disabled_renders_no_crd_and_everything_else() -> None:
    rendered = render({"crds": {"enabled": False}})
    assert rendered.all("CustomResourceDefinition") == []
    assert rendered.all("Deployment") and rendered.all("MutatingWebhookConfiguration")


def test_crds_are_not_in_helms_crds_folder() -> None:
    """A crds/ folder would be installed before the templates and never upgraded."""
    from tests.chart.helmkit import CHART

    assert not (CHART / "crds").exists()
