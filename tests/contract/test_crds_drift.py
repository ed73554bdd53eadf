"""crds/ and the chart's copy are generated from the models and must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from maxtune.contract import crdgen

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `maxtune crds --write` and commit the result"


@pytest.mark.parametrize("folder", ["crds", "charts/maxtune/crds"])
def test_generated_crds_match_files(folder: str) -> None:
    expected = crdgen.rendered_files()
    on_disk = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert set(on_disk) == set(expected), f"{folder} holds other files than the models; {FIX}"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{folder}/{name} drifted from the models; {FIX}"


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
