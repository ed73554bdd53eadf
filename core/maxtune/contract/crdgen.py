"""CustomResourceDefinitions generated from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3 schema: no `$ref`, no `anyOf` of a
type with null, every node typed. Pydantic's JSON Schema is close; this module
inlines references, folds optionals and keeps the constraints (patterns, bounds,
enums, CEL rules) so that the API server itself rejects bad objects with the
message the model gives.
"""

from __future__ import annotations

from typing import Any

import yaml

from maxtune.contract.models import AutotunePolicy, GPUNodeProfile
from maxtune.contract.names import GROUP, VERSION

Schema = dict[str, Any]

MODELS: tuple[type[GPUNodeProfile] | type[AutotunePolicy], ...] = (GPUNodeProfile, AutotunePolicy)

# Keys of pydantic's schema that carry no meaning for the API server.
_DROP = {"title", "$defs", "discriminator"}


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_resolve(extra, defs)}
    return {key: _resolve(value, defs) for key, value in node.items() if key not in _DROP}


def _fold(node: Any) -> Any:
    """Fold `anyOf: [X, null]` into X, `const` into a one-value enum, bounds into v3.0 form."""
    if isinstance(node, list):
        return [_fold(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _fold(value) for key, value in node.items()}
    if "anyOf" in node:
        options = [opt for opt in node["anyOf"] if opt.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"a CRD schema cannot express a union of {options}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", ...) is None:
            rest.pop("default")
        node = {**options[0], **rest}
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if node.get("default", ...) is None:
        node.pop("default")
    # JSON Schema 2020 bounds are numbers; OpenAPI v3.0 (Kubernetes) wants a bool flag.
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[plain] = value
            node[bound] = True
    return node


def schema_of(model: type[GPUNodeProfile] | type[AutotunePolicy]) -> Schema:
    """The openAPIV3Schema of one kind."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = _fold(_resolve(raw, raw.get("$defs", {})))
    props = schema["properties"]
    # metadata is the API server's, not ours to describe.
    props["metadata"] = {"type": "object"}
    for key in ("apiVersion", "kind"):
        props[key] = {"type": "string"}
    required = [r for r in schema.get("required", []) if r != "metadata"]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    if model.crd_validations:
        schema["x-kubernetes-validations"] = [dict(v) for v in model.crd_validations]
    if "status" in props:
        _list_map(props["status"]["properties"]["conditions"], key="type")
    return schema


def _list_map(node: Schema, *, key: str) -> None:
    node["x-kubernetes-list-type"] = "map"
    node["x-kubernetes-list-map-keys"] = [key]


def crd_for(model: type[GPUNodeProfile] | type[AutotunePolicy]) -> dict[str, Any]:
    kind = model.model_fields["kind"].default
    schema = schema_of(model)
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": [
            {"name": n, "type": t, "jsonPath": p, **({"description": d} if d else {})}
            for n, t, p, d in model.crd_printer_columns
        ],
    }
    if "status" in schema["properties"]:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{model.crd_plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "maxtune"},
        },
        "spec": {
            "group": GROUP,
            "scope": model.crd_scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": model.crd_plural,
                "singular": model.crd_singular,
                "shortNames": list(model.crd_short_names),
                "categories": ["maxtune"],
            },
            "versions": [version],
        },
    }


HEADER = (
    "# Generated from core/maxtune/contract/models.py by `maxtune crds --write`. Do not edit.\n"
)


def render(model: type[GPUNodeProfile] | type[AutotunePolicy]) -> str:
    return HEADER + yaml.safe_dump(crd_for(model), sort_keys=False, width=100)


def rendered_files() -> dict[str, str]:
    """File name -> content, as they stand in crds/ (for `kubectl apply` and GitOps)."""
    return {f"{GROUP}_{model.crd_plural}.yaml": render(model) for model in MODELS}


# The chart renders the CRDs as templates, as cert-manager's chart does: Helm installs a chart's
# crds/ folder once and never upgrades it, so a new field would never reach an upgraded cluster.
_CHART_HEAD = """\
{{{{- /* Generated from contract/models.py by `maxtune crds --write`. Do not edit. */}}}}
{{{{- if .Values.crds.enabled }}}}
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {name}
  labels:
    {{{{- include "maxtune.labels" . | nindent 4 }}}}
  {{{{- if .Values.crds.keep }}}}
  annotations:
    # Uninstalling the release keeps the CRD, and so every GPUNodeProfile and AutotunePolicy.
    helm.sh/resource-policy: keep
  {{{{- end }}}}
"""


def chart_template(model: type[GPUNodeProfile] | type[AutotunePolicy]) -> str:
    """The CRD as a chart template: release labels, the keep policy, behind crds.enabled."""
    return chart_template_of(crd_for(model))


def chart_template_of(crd: dict[str, Any]) -> str:
    """Any CRD manifest as the chart renders it (tests build older versions of ours with it)."""
    spec = yaml.safe_dump({"spec": crd["spec"]}, sort_keys=False, width=100)
    if "{{" in spec or "}}" in spec:
        raise ValueError(f"{crd['metadata']['name']}: the schema holds '{{{{' or '}}}}'")
    return _CHART_HEAD.format(name=crd["metadata"]["name"]) + spec + "{{- end }}\n"


def chart_files() -> dict[str, str]:
    """File name -> content, as they stand in the chart's templates/crds/."""
    return {f"{GROUP}_{model.crd_plural}.yaml": chart_template(model) for model in MODELS}
