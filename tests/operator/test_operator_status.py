"""`maxtune status`'s speed table: per GPU class, the training reference under max-autotune."""

from __future__ import annotations

import io
import json
import math

import pytest

from maxtune.contract.models import AutotunePolicy, ObjectMeta, PolicySpec
from maxtune.operator.readiness import report
from maxtune.operator.speed import ClassSpeed, class_speeds, table
from maxtune_dev.testkit import A100, H100, T4, Fleet, stale

H100_CLASS = "nvidia-h100-80gb-hbm3-132sm"
A100_CLASS = "nvidia-a100-sxm4-40gb-108sm"


def speed_fleet() -> Fleet:
    """H100s fast in default that gain nothing worth it; A100s slower that gain 26%."""
    f = Fleet()
    f.add("h100-a", H100, 8, gain=-0.01)
    f.add("h100-b", H100, 8, gain=0.0)
    f.add("a100-a", A100, 4, gain=0.25)
    f.add("a100-b", A100, 4, gain=0.25)
    f.add("t4-a", T4, 4)
    f.add("mig-a", H100, 1, mig=["3g.40gb", "3g.40gb"])
    f.add("h100-gone", H100, 8, gain=0.5, heartbeat=stale(2))  # stale: not counted
    return f


def by_class(rows: list[ClassSpeed]) -> dict[str, ClassSpeed]:
    return {r.gpu_class: r for r in rows}


def test_the_speed_table_shows_each_class_step_times_gain_compile_and_break_even() -> None:
    f = speed_fleet()
    rows = by_class(class_speeds(f.state, f.clock))
    assert set(rows) == {
        H100_CLASS,
        A100_CLASS,
        "tesla-t4-40sm",
        "nvidia-h100-80gb-hbm3-mig-3g.40gb-60sm",
    }
    a100 = rows[A100_CLASS]
    assert (a100.nodes, a100.gpus, a100.capable, a100.measured) == (2, 8, 8, 8)
    assert a100.mode == "max-autotune" and a100.node_modes == {"max-autotune": 2}
    about = a100.about
    assert about is not None and about.recommended and about.mode.value == "max-autotune"
    assert about.step_seconds == pytest.approx(A100.training_step)
    assert a100.mode_step_seconds == pytest.approx(A100.training_step / 1.26)
    assert (about.gain, about.gain_low, about.gain_high) == pytest.approx((0.26, 0.26, 0.26))
    assert about.extra_compile_seconds == pytest.approx(9.1 - 3.8)
    saved = A100.training_step * 0.26 / 1.26
    assert about.break_even_steps == math.ceil((9.1 - 3.8) / saved)
    assert about.warm_break_even_steps == math.ceil((1.6 - 1.1) / saved)

    h100 = rows[H100_CLASS]  # the stale node is left out
    assert (h100.nodes, h100.gpus, h100.mode) == (2, 16, "default")
    # Advised default: the figures are the best measured mode's, marked not recommended.
    assert h100.about is not None and not h100.about.recommended
    assert h100.about.step_seconds == pytest.approx(H100.training_step)
    assert h100.mode_step_seconds is not None
    assert h100.mode_step_seconds < a100.mode_step_seconds  # still the fastest class

    t4, mig = rows["tesla-t4-40sm"], rows["nvidia-h100-80gb-hbm3-mig-3g.40gb-60sm"]
    assert (t4.capable, t4.about, t4.mode) == (0, None, "default")
    assert (mig.nodes, mig.gpus, mig.capable, mig.about) == (1, 2, 0, None)


def test_the_table_reads_in_100_columns() -> None:
    f = speed_fleet()
    text = table(class_speeds(f.state, f.clock))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split() == ["GPU", "CLASS", "NODES", "GPUS", "CAPABLE", "MODE"]
    a100 = next(i for i, line in enumerate(lines) if line.startswith(A100_CLASS))
    assert lines[a100].split()[1:] == ["2", "8", "yes", "max-autotune"]
    figures = lines[a100 + 1]
    assert figures.startswith("  max-autotune ")
    assert "2.60 ms" in figures and "2.06 ms" in figures and "+26.0% [+26.0%, +26.0%]" in figures
    h100 = next(i for i, line in enumerate(lines) if line.startswith(H100_CLASS))
    assert lines[h100 + 1].startswith("  (max-autotune) ") and "1.10 ms" in lines[h100 + 1]
    t4 = next(i for i, line in enumerate(lines) if line.startswith("tesla-t4-40sm"))
    assert lines[t4].split()[1:] == ["1", "4", "no", "default"]
    assert not lines[t4 + 1].startswith("  ")  # no figures for a class that cannot gain


def test_a_class_whose_nodes_disagree_is_mixed_and_says_how() -> None:
    f = Fleet()
    f.add("a100-a", A100, 8, gain=0.25)
    f.add("a100-slow", A100, 8, gain=-0.05)
    rows = class_speeds(f.state, f.clock)
    assert [(r.mode, r.node_modes) for r in rows] == [("mixed", {"default": 1, "max-autotune": 1})]
    assert f"{A100_CLASS} is mixed: default on 1 node(s), max-autotune on 1 node(s)." in table(rows)


def test_the_longest_mode_and_class_names_still_fit() -> None:
    """max-autotune-no-cudagraphs recommended (the policy caps the extra compile below
    max-autotune's), beside a measured 7g MIG class's long name."""
    f = Fleet()
    policy = AutotunePolicy(
        metadata=ObjectMeta(name="default", resource_version="1"),
        spec=PolicySpec(max_extra_compile_seconds=5.0),
    )
    f.state.upsert_policy(policy)
    f.add("h100-a", H100, 8, gain=0.2)
    rows = class_speeds(f.state, f.clock)
    assert rows[0].mode == "max-autotune-no-cudagraphs"
    long_class = ClassSpeed(
        "nvidia-h100-80gb-hbm3-mig-7g.80gb-132sm",
        12,
        96,
        96,
        96,
        rows[0].mode,
        about=rows[0].about,
        mode_step_seconds=rows[0].mode_step_seconds,
    )
    text = table([*rows, long_class])
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "  max-autotune-no-cudagraphs " in text


def test_status_json_carries_the_speed_table() -> None:
    f = speed_fleet()
    out = io.StringIO()
    assert report(f.state, f.clock, out, as_json=True) == 0
    body = json.loads(out.getvalue())
    classes = {c["gpuClass"]: c for c in body["gpuClasses"]}
    figures = classes[A100_CLASS]["figures"]
    assert figures["mode"] == "max-autotune" and figures["recommended"] is True
    assert figures["modeStepSeconds"] == pytest.approx(A100.training_step / 1.26)
    assert figures["gainLow"] == pytest.approx(0.26) and figures["breakEvenSteps"] > 0
    assert "figures" not in classes["tesla-t4-40sm"]
    assert {r["node"] for r in body["nodes"]} >= {"h100-a", "a100-a", "h100-gone"}
    text = io.StringIO()
    assert report(f.state, f.clock, text, as_json=False) == 0
    per_node, speed, *_ = text.getvalue().split("\n\n")
    assert per_node.startswith("NODE ") and speed.startswith("GPU CLASS ")
