"""Hypothesis strategies for what reaches maxtune from outside: AdmissionReviews and pod specs.

Inputs are built to look almost right (the webhook must get far enough to decide) and then
spoiled: wrong types at any level, unicode (lone surrogates included: JSON can carry them),
huge env lists, odd resource names and quantities, init and ephemeral containers, variables a
user already set, deep nesting, broken envelopes and bodies that are not JSON at all.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from maxtune.contract.modes import DEFAULT_RECIPES

INDUCTOR_VARS = [
    *sorted({k for recipe in DEFAULT_RECIPES.values() for k in recipe}),
    "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM_BACKENDS",
    "TORCHINDUCTOR_FX_GRAPH_CACHE",
    "TORCHINDUCTOR_CACHE_DIR",
]

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3)
texts = st.one_of(
    st.text(max_size=12),
    surrogates,
    st.sampled_from(["", " ", "~", "/", "~1", "a/b~c", "\u0000", "\u202e", "名前", "🙂" * 3]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)

# What a JSON encoder can send to a strict parser such as the API server's: no NaN, no Infinity.
finite_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        texts,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)


def paths(
    value: Any, prefix: tuple[Any, ...] = (), *, items: int | None = None
) -> list[tuple[Any, ...]]:
    """Every key path inside `value` (dict keys and list indexes; only the first `items` of
    each list when given), for strategies that replace one value somewhere in a document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths(item, (*prefix, key), items=items))
    elif isinstance(value, list):
        for index, item in enumerate(value[:items]):
            found.extend(paths(item, (*prefix, index), items=items))
    return found


def parent_of(value: Any, path: tuple[Any, ...]) -> Any:
    """The container that holds `path[-1]`."""
    for key in path[:-1]:
        value = value[key]
    return value


def nested(depth: int) -> Any:
    """A list `depth` levels deep, with a dict at every tenth level."""
    value: Any = "bottom"
    for level in range(depth):
        value = {"k": value} if level % 10 == 0 else [value]
    return value


deep = st.integers(min_value=1, max_value=900).map(nested)

resource_names = st.one_of(
    st.sampled_from(
        [
            "nvidia.com/gpu",
            "nvidia.com/mig-1g.10gb",
            "nvidia.com/mig-3g.20gb",
            "nvidia.com/mig-7g.80gb",
            "nvidia.com/mig-",
            "nvidia.com/mig-../../x",
            "nvidia.com/gpu ",
            "NVIDIA.com/gpu",
            "nvidia.com/gpu/extra",
            "amd.com/gpu",
            "cpu",
            "memory",
            "",
        ]
    ),
    texts.map(lambda t: f"nvidia.com/mig-{t}"),
    texts,
)
quantities = st.one_of(
    st.sampled_from(
        [
            "1",
            "2",
            "8",
            "0",
            "1.5",
            "0.1",
            "500m",
            "1k",
            "1Ki",
            "1e3",
            "1e309",
            "9" * 40,
            "-1",
            "  1",
            "\uff11",  # a fullwidth digit one
            "two",
            "",
            "NaN",
            "0x10",
        ]
    ),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    json_values,
)
resources = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "limits": st.one_of(st.dictionaries(resource_names, quantities, max_size=3), leaves),
            "requests": st.one_of(st.dictionaries(resource_names, quantities, max_size=3), leaves),
        },
    ),
    json_values,
)
env_names = st.one_of(st.sampled_from([*INDUCTOR_VARS, "PATH", "A"]), texts)
env_entry = st.one_of(
    st.fixed_dictionaries(
        {"name": env_names},
        optional={
            "value": st.one_of(texts, leaves),
            "valueFrom": st.one_of(
                st.just({"fieldRef": {"fieldPath": "metadata.name"}}), json_values
            ),
        },
    ),
    json_values,
)


def huge_env(n: int) -> list[dict[str, str]]:
    """`n` plain variables with the inductor variables a user might already set among them."""
    entries = [{"name": f"VAR_{i}", "value": "x" * (i % 50)} for i in range(n)]
    for i, name in enumerate(INDUCTOR_VARS):
        entries.insert((i * 7919) % (n + 1), {"name": name, "value": str(i % 2)})
    return entries


envs = st.one_of(
    st.lists(env_entry, max_size=5),
    st.integers(min_value=0, max_value=5000).map(huge_env),
    json_values,
)
gpu_limits = st.fixed_dictionaries(
    {
        "limits": st.dictionaries(
            st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]),
            st.sampled_from(["1", "2", 1]),
            min_size=1,
            max_size=1,
        )
    }
)
container = st.fixed_dictionaries(
    {"name": st.one_of(texts, leaves)},
    optional={
        "image": st.one_of(st.just("pytorch:2.11"), texts),
        "resources": st.one_of(gpu_limits, resources),
        "env": envs,
        "envFrom": st.one_of(st.just([{"configMapRef": {"name": "c"}}]), json_values),
        "restartPolicy": st.one_of(st.sampled_from(["Always", "Never"]), leaves),
        "extra": json_values,
    },
)
gpu_container = st.fixed_dictionaries(
    {"name": st.one_of(st.just("train"), texts), "resources": gpu_limits},
    optional={"env": envs, "image": texts, "restartPolicy": st.just("Always")},
)
containers = st.one_of(st.lists(container, max_size=4), json_values)


def _insert(parts: tuple[list[Any], Any, int]) -> list[Any]:
    others, gpu, at = parts
    return [*others[:at], gpu, *others[at:]]


with_gpu = st.tuples(st.lists(container, max_size=3), gpu_container, st.integers(0, 3)).map(_insert)
label_keys = st.one_of(
    st.sampled_from(
        [
            "maxtune.io/gpu-class",
            "maxtune.io/recommended-mode",
            "maxtune.io/max-autotune-capable",
            "maxtune.io/sm-count",
            "kubernetes.io/hostname",
        ]
    ),
    texts,
)
label_values = st.one_of(
    st.sampled_from(
        ["nvidia-h100-80gb-hbm3-132sm", "tesla-t4-40sm", "max-autotune", "default", "true", "132"]
    ),
    texts,
)
requirement = st.one_of(
    st.fixed_dictionaries(
        {
            "key": st.one_of(label_keys, leaves),
            "operator": st.one_of(
                st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]), leaves
            ),
        },
        optional={"values": st.one_of(st.lists(label_values, max_size=3), json_values)},
    ),
    json_values,
)
terms = st.one_of(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "matchExpressions": st.one_of(st.lists(requirement, max_size=3), json_values),
                "matchFields": json_values,
            },
        ),
        max_size=3,
    ),
    json_values,
)
affinity = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "nodeAffinity": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "requiredDuringSchedulingIgnoredDuringExecution": st.one_of(
                            st.fixed_dictionaries({}, optional={"nodeSelectorTerms": terms}),
                            json_values,
                        ),
                        "preferredDuringSchedulingIgnoredDuringExecution": json_values,
                    },
                ),
                json_values,
            ),
            "podAntiAffinity": json_values,
        },
    ),
    json_values,
    deep,
)
specs = st.fixed_dictionaries(
    {"containers": st.integers(0, 9).flatmap(lambda n: with_gpu if n < 7 else containers)},
    optional={
        "initContainers": st.integers(0, 9).flatmap(lambda n: with_gpu if n < 3 else containers),
        "ephemeralContainers": containers,
        "nodeSelector": st.one_of(
            st.dictionaries(label_keys, label_values, max_size=3), json_values
        ),
        "affinity": affinity,
        "tolerations": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "key": texts,
                        "operator": st.sampled_from(["Exists", "Equal", "", "Odd"]),
                        "value": texts,
                        "effect": st.sampled_from(["NoSchedule", "NoExecute", ""]),
                    },
                ),
                max_size=2,
            ),
            json_values,
        ),
        "nodeName": st.one_of(texts, leaves),
        "schedulerName": texts,
        "extra": st.one_of(json_values, deep),
    },
)
opted_in = st.fixed_dictionaries(
    {"labels": st.just({"maxtune.io/inject": "true"})},
    optional={
        "name": st.one_of(texts, leaves),
        "generateName": texts,
        "annotations": st.one_of(
            st.dictionaries(
                st.one_of(st.just("maxtune.io/decision"), texts), st.one_of(texts, leaves)
            ),
            json_values,
        ),
    },
)
odd_metadata = st.one_of(
    st.fixed_dictionaries(
        {"labels": st.one_of(st.dictionaries(texts, st.one_of(texts, leaves)), json_values)}
    ),
    json_values,
)
metadata = st.integers(0, 9).flatmap(lambda n: opted_in if n < 7 else odd_metadata)
pods = st.fixed_dictionaries(
    {
        "metadata": metadata,
        "spec": st.integers(0, 9).flatmap(lambda n: specs if n < 8 else json_values),
    },
    optional={"apiVersion": st.one_of(st.just("v1"), texts), "kind": st.just("Pod")},
)


def review(obj: Any, *, uid: Any = "uid-1", namespace: Any = "team", **over: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "someone"},
        "object": obj,
        "dryRun": False,
    }
    request.update(over)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


uids = st.one_of(st.uuids().map(str), texts, leaves, st.just("u" * 10_000))
envelope_overrides = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.one_of(
            st.sampled_from(
                [
                    {"group": "", "version": "v1", "kind": "Pod"},
                    {"group": "apps", "version": "v1", "kind": "Deployment"},
                ]
            ),
            json_values,
        ),
        "operation": st.one_of(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]), leaves),
        "subResource": st.one_of(st.sampled_from(["", "status", "ephemeralContainers"]), leaves),
        "oldObject": json_values,
        "dryRun": leaves,
        "userInfo": json_values,
        "options": json_values,
    },
)


@st.composite
def reviews(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """(review, the uid it carries): a pod in an envelope, sometimes a spoiled envelope."""
    # Mostly a right envelope, so that the pods inside get decided; sometimes a spoiled one.
    usual = st.integers(0, 9).map(lambda n: n < 8)
    uid = draw(st.uuids().map(str)) if draw(usual) else draw(uids)
    namespace = "team" if draw(usual) else draw(st.one_of(texts, leaves))
    over = {} if draw(usual) else draw(envelope_overrides)
    body = review(draw(pods), uid=uid, namespace=namespace, **over)
    if draw(st.integers(0, 9)) == 0:
        body["apiVersion"] = draw(
            st.one_of(st.sampled_from(["admission.k8s.io/v1beta1", "v2"]), leaves)
        )
    return body, uid


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict) and len(prefix) < 12:
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list) and len(prefix) < 12:
        for index, item in enumerate(value[:20]):
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def spoiled(draw: st.DrawFn) -> dict[str, Any]:
    """A review with up to three values anywhere in it replaced by any JSON value."""
    body, _ = draw(reviews())
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = draw(json_values)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(0, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(0, 200_000).map(lambda n: b'{"request":' * n),
    st.tuples(spoiled(), st.integers(0, 4000)).map(lambda t: encode(t[0])[: t[1]]),
    spoiled().map(lambda b: json.dumps(b).encode("utf-16")),
    spoiled().map(lambda b: b"\xef\xbb\xbf" + encode(b)),
)
