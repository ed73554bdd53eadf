"""The agent's own inputs: fleet files (`--simulate`) and the policies it reads.

A fleet file either loads or fails with `FleetError` (one message naming the file and the
place), never another exception: the CLI turns FleetError into exit code 2 and a line on stderr,
anything else into a traceback. Policies reach the agent through the API server (see
test_crd_inputs_on_plane.py); what it does with the ones it lists is checked here with any
JSON, the way a newer or older schema could present them.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from maxtune.agent.fleetfile import FleetError, load
from maxtune.contract.models import AutotunePolicy
from maxtune.contract.policy import cluster_policy, torch_rule
from tests.faults.procs import MODELS
from tests.fuzz.budget import count, examples
from tests.fuzz.strategies import json_values, parent_of, paths, texts

VALID: dict[str, Any] = {
    "name": "fuzz",
    "software": {"driverVersion": "580.159.04", "torchVersion": "2.11.0"},
    "gpuModels": copy.deepcopy(MODELS),
    "nodes": [
        {"name": "a", "gpus": [{"model": "big", "count": 2}]},
        {"name": "h-{i:03d}", "replicas": 3, "gpus": [{"model": "small"}]},
        {
            "name": "mig",
            "gpus": [{"model": "big", "mig": [{"profile": "3g.40gb", "smCount": 60, "count": 2}]}],
        },
    ],
}
PATTERNS = [
    "n-{i}",
    "n-{i:03d}",
    "n-{i:x}",
    "n-{i:>5}",
    "n-{i:099999999999}",
    "n-{0}",
    "n-{j}",
    "n-{i!r}",
    "n-{i!z}",
    "n-{i.real}",
    "n-{i.nope}",
    "n-{i[0]}",
    "n-{",
    "n-}",
    "n-{{i}}",
    "N-{i}",
    "n-" + "x" * 300 + "-{i}",
]
name_patterns = st.one_of(st.sampled_from(PATTERNS), texts)
values = st.one_of(json_values, name_patterns, st.integers(-5, 200_001))


@st.composite
def fleets(draw: st.DrawFn) -> str:
    """YAML text: the valid fleet with a few values replaced, or odd YAML altogether."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=300))
    if kind == 1:
        return draw(
            st.sampled_from(
                [
                    "",
                    "~",
                    "[]",
                    "name: x\nnodes: [\n",
                    "a: &a [1]\nb: *a\n",
                    "!!python/object/apply:os.system ['true']\n",
                    "name: x\ngpuModels: {}\nnodes: []\n",
                    "\t- tab",
                    "name: " + "x" * 100_000,
                ]
            )
        )
    fleet = copy.deepcopy(VALID)
    if draw(st.booleans()):  # the replicated node's name pattern is expanded with str.format
        fleet["nodes"][1]["name"] = draw(name_patterns)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths(fleet)))
        parent = parent_of(fleet, path)
        if path[-1] == "name" or draw(st.booleans()):
            parent[path[-1]] = draw(name_patterns if path[-1] == "name" else values)
        else:
            parent[path[-1]] = draw(values)
    return yaml.safe_dump(fleet, allow_unicode=draw(st.booleans()))


def with_pattern(pattern: str) -> str:
    fleet = copy.deepcopy(VALID)
    fleet["nodes"][1]["name"] = pattern
    return yaml.safe_dump(fleet)


def every_pattern(test: Callable[..., None]) -> Callable[..., None]:
    """Each name pattern at least once, whatever the generator's luck."""
    for pattern in PATTERNS:
        test = example(text=with_pattern(pattern))(test)
    return test


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@every_pattern
@given(text=fleets())
def test_a_fleet_file_loads_or_fails_with_a_message(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text, errors="surrogatepass")
    try:
        fleet = load(path)
    except FleetError as exc:
        assert str(path) in str(exc), str(exc)
        event("refused")
    else:
        event("loaded")
        for node in fleet.nodes:
            fleet.node(node)
    count("agent: fleet files")


@pytest.mark.parametrize(
    "text", ["nodes: [{name: 'n-{i[0]}', replicas: 2, gpus: []}]\nname: x\ngpuModels: {}\n"]
)
def test_the_cli_answers_a_bad_fleet_file_with_exit_2_and_one_message(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "maxtune.cli.main", "probe", "--simulate", str(path), "--node", "n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and str(path) in done.stderr


@settings(max_examples=examples(300), deadline=None)
@given(
    items=st.lists(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"metadata": st.fixed_dictionaries({"name": texts}), "spec": json_values}
            ),
        ),
        max_size=4,
    )
)
def test_listed_policies_the_agent_cannot_read_are_skipped(items: list[Any]) -> None:
    """KubeSink.policy(): each listed item is validated; one that does not validate is skipped,
    so the torch rule always comes from a readable policy or the built-in one."""
    readable = []
    for item in items:
        try:
            readable.append(AutotunePolicy.model_validate(item))
        except ValueError:
            continue
    assert torch_rule(cluster_policy(readable).spec)
    count("agent: listed policies")
