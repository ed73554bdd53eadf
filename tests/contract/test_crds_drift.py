"""crds/ and the chart's CRD templates are generated from the models and must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from maxtune.contract import crdgen

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `maxtune crds --write` and commit the result"


GENERATED = {"crds": crdgen.rendered_files, "charts/maxtune/templates/crds": crdgen.chart_files}


@pytest.mark.parametrize("folder", sorted(GENERATED))
def test_generated_crds_match_files(folder: str) -> None:
    expected = GENERATED[folder]()
    on_disk = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert set(on_disk) == set(expected), f"{folder} holds other files than the models; {FIX}"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{folder}/{name} drifted from the models; {FIX}"


@pytest.mark.parametrize("name", sorted(crdgen.rendered_files()))
def test_chart_template_holds_the_plain_crds_spec(name: str) -> None:
    """The template is the plain manifest's spec, byte for byte, under Helm's metadata."""
    plain = crdgen.rendered_files()[name]
    template = crdgen.chart_files()[name]
    spec = plain[plain.index("\nspec:\n") + 1 :]
    assert spec in template
    assert template.rstrip().endswith(spec.rstrip() + "\n{{- end }}")


def _walk(node: object, path: str = "") -> list[str]:
    """Paths of schema nodes a structural schema forbids."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "const", "title"):
            if key in node:
                bad.append(f"{path}/{key}")
        shaped = any(k in node for k in ("properties", "items", "additionalProperties"))
        if shaped and "type" not in node:
            bad.append(f"{path} (untyped)")
        for key, value in node.items():
            bad += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad += _walk(value, f"{path}[{i}]")
    return bad


@pytest.mark.parametrize("name", sorted(crdgen.rendered_files()))
def test_schema_is_structural(name: str) -> None:
    crd = yaml.safe_load(crdgen.rendered_files()[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []


def test_profile_has_status_subresource_and_columns() -> None:
    crd = crdgen.crd_for(crdgen.MODELS[0])
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:4] == ["GPUs", "SMs", "Capable", "Mode"]
    assert columns[-1] == "Age"
