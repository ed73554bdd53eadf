"""From devices to summaries and node labels."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from maxtune.contract import assess, names
from maxtune.contract.gpuclass import gpu_class, mixed_class
from maxtune.contract.models import Gpu, Measurements, PolicySpec, ProfileStatus
from maxtune.contract.modes import Mode
from maxtune.contract.rounds import BlockRounds, ModeRounds, compile_measurement, spread_rounds

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"


def _verdict(capable: bool = True) -> dict[str, Any]:
    return {"capable": capable, "rule": "test", "torchVersion": "2.11"}


def training(
    gains: dict[str, float],
    *,
    spread: float = 0.005,
    processes: int = 2,
    rounds: int = 10,
    step: float = 0.001,
    compile_s: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A training measurement whose modes' rounds lie within +-`spread` of step / (1 + gain)."""
    compile_s = compile_s or {}
    modes = tuple(
        ModeRounds(
            mode=Mode(m),
            compile_seconds=compile_s.get(m, 5.0 if m == "default" else 12.0),
            rounds=spread_rounds(
                step / (1 + g), spread, processes=processes, rounds=rounds, seed=i
            ),
        )
        for i, (m, g) in enumerate({"default": 0.0, **gains}.items())
    )
    data = BlockRounds(block="transformer", workload="training", calls_per_round=20, modes=modes)
    return compile_measurement(data).wire()


def gpu(
    index: int,
    sms: int | None = 132,
    product: str = H100,
    *,
    gains: dict[str, float] | None = None,
    measured: dict[str, Any] | None = None,
    gemm_ok: bool | None = None,
    mig: list[tuple[str, int]] | None = None,
    strategy: str = "mixed",
) -> Gpu:
    """A GPU; `gains` gives it a training measurement with a narrow interval around them."""
    measurements: dict[str, Any] = {}
    if gains is not None:
        measurements["training"] = training(gains)
    if measured is not None:
        measurements["training"] = measured
    if gemm_ok is not None:
        measurements["gemm"] = [{"ok": gemm_ok, "size": 4096}]
    instances = [
        {
            "profile": profile,
            "resource": names.RESOURCE_GPU if strategy == "single" else names.mig_resource(profile),
            "smCount": isms,
            "gpuClass": gpu_class(product, isms, profile),
            "verdict": _verdict(isms >= 68),
        }
        for profile, isms in (mig or [])
    ]
    return Gpu.model_validate(
        {
            "index": index,
            "uuid": f"GPU-{index}",
            "product": product,
            "memoryMib": 81559,
            "computeCapability": "9.0",
            "smCount": sms,
            "migEnabled": bool(mig),
            "resource": None if mig else names.RESOURCE_GPU,
            "gpuClass": gpu_class(product, sms),
            "verdict": _verdict(),
            "migInstances": instances,
            "measurements": measurements or None,
        }
    )


def status(gpus: list[Gpu], *, age: float = 0.0) -> ProfileStatus:
    resources, summary = assess.summarize(gpus, PolicySpec())
    return ProfileStatus.model_validate(
        {
            "source": "simulation",
            "level": "full",
            "heartbeatTime": NOW - timedelta(seconds=age),
            "fingerprint": "x",
            "software": {"agentVersion": "test"},
            "gpus": [g.wire() for g in gpus],
            "resources": [r.wire() for r in resources],
            "summary": summary.wire(),
        }
    )


def test_capable_but_unmeasured_recommends_default() -> None:
    resources, summary = assess.summarize([gpu(0)], PolicySpec())
    assert summary.capable
    assert summary.recommended_mode is Mode.DEFAULT
    assert resources[0].measured_gain is None


def test_measured_gain_above_threshold_recommends_best_mode() -> None:
    gpus = [
        gpu(i, gains={"max-autotune": 0.08, "max-autotune-no-cudagraphs": 0.05}) for i in (0, 1)
    ]
    _, summary = assess.summarize(gpus, PolicySpec(min_measured_gain=0.03))
    assert summary.recommended_mode is Mode.MAX_AUTOTUNE


def test_measured_loss_recommends_default() -> None:
    # facts/h100.md: the reference MLP ran 5% slower with max-autotune-no-cudagraphs.
    gpus = [gpu(0, gains={"max-autotune-no-cudagraphs": -0.05, "max-autotune": -0.01})]
    resources, summary = assess.summarize(gpus, PolicySpec())
    assert summary.recommended_mode is Mode.DEFAULT
    assert resources[0].mode is Mode.MAX_AUTOTUNE  # the better of two losses
    assert resources[0].measured_gain is not None
    assert abs(resources[0].measured_gain - -0.01) < 0.005
    assert "lower bound" in resources[0].advice


def test_median_across_gpus_resists_one_noisy_card() -> None:
    gains = [0.05, 0.06, 0.01, 0.05]
    gpus = [gpu(i, gains={"max-autotune": g}) for i, g in enumerate(gains)]
    _, summary = assess.summarize(gpus, PolicySpec(min_measured_gain=0.03))
    assert summary.recommended_mode is Mode.MAX_AUTOTUNE


def test_failed_triton_check_is_never_capable() -> None:
    _, summary = assess.summarize(
        [gpu(0, gemm_ok=False, gains={"max-autotune": 0.5})], PolicySpec()
    )
    assert not summary.capable
    assert summary.recommended_mode is Mode.DEFAULT


def test_small_gpu_is_not_capable_and_smallest_sm_count_wins() -> None:
    resources, summary = assess.summarize([gpu(0, 132), gpu(1, 46, "RTX 3070")], PolicySpec())
    assert not summary.capable
    assert summary.sm_count == 46
    assert summary.gpu_class == mixed_class(["nvidia-h100-80gb-hbm3-132sm", "rtx-3070-46sm"])
    assert resources[0].count == 2


def test_unmeasured_sm_count_is_not_capable() -> None:
    resources, summary = assess.summarize([gpu(0, None)], PolicySpec())
    assert not summary.capable
    assert resources[0].sm_count is None


def test_mig_resources_are_summarised_per_profile() -> None:
    gpus = [gpu(0, mig=[("1g.10gb", 16), ("1g.10gb", 16), ("3g.40gb", 60)]), gpu(1)]
    resources, summary = assess.summarize(gpus, PolicySpec())
    by_name = assess.resources_by_name(resources)
    assert by_name["nvidia.com/mig-1g.10gb"].count == 2
    assert not by_name["nvidia.com/mig-3g.40gb"].capable
    assert by_name["nvidia.com/gpu"].count == 1  # the MIG-enabled GPU is not schedulable whole
    assert summary.capable


def test_mig_only_node_is_not_capable_and_reports_smallest_slice() -> None:
    _, summary = assess.summarize([gpu(0, mig=[("7g.80gb", 132), ("1g.10gb", 16)])], PolicySpec())
    assert not summary.capable
    assert summary.sm_count == 16


def test_node_labels() -> None:
    labels = assess.node_labels(status([gpu(0)]), PolicySpec(), NOW)
    assert labels == {
        names.LABEL_CAPABLE: "true",
        names.LABEL_MODE: "default",
        names.LABEL_SM_COUNT: "132",
        names.LABEL_CLASS: "nvidia-h100-80gb-hbm3-132sm",
    }
    assert all(key.startswith(names.PREFIX) for key in labels)


def test_stale_missing_or_gpu_less_profiles_have_no_labels() -> None:
    spec = PolicySpec(stale_after_seconds=60)
    assert assess.node_labels(status([gpu(0)], age=61), spec, NOW) == {}
    assert assess.node_labels(status([gpu(0)], age=59), spec, NOW) != {}
    assert assess.node_labels(None, spec, NOW) == {}
    assert assess.node_labels(status([]), spec, NOW) == {}


def test_policy_torch_rule_moves_the_verdict() -> None:
    # 70 SMs pass the 2.4+ rule (68) but not the 2.0-2.3 rule (80).
    old = PolicySpec.model_validate({"torch": {"version": "2.3"}})
    assert assess.summarize([gpu(0, 70)], PolicySpec())[1].capable
    assert not assess.summarize([gpu(0, 70)], old)[1].capable


def test_gpu_class_labels_are_label_safe() -> None:
    long = gpu_class(
        "NVIDIA Some Extremely Long Product Name With Many Words 80GB HBM3e", 132, "7g.80gb+me"
    )
    assert len(long) <= 63
    assert long[0].isalnum() and long[-1].isalnum()
    assert gpu_class(H100, 16, "1g.10gb") == "nvidia-h100-80gb-hbm3-mig-1g.10gb-16sm"


# ---------------------------------------------------------------- gains with their noise


def _explicit(
    default: list[list[float]],
    mode: list[list[float]],
    compile_default: float = 5.0,
    compile_mode: float = 12.0,
) -> Any:
    modes = (
        ModeRounds(Mode.DEFAULT, compile_default, tuple(map(tuple, default))),
        ModeRounds(Mode.MAX_AUTOTUNE, compile_mode, tuple(map(tuple, mode))),
    )
    data = BlockRounds(block="transformer", workload="training", calls_per_round=20, modes=modes)
    return compile_measurement(data).wire()


def _one_gpu(measured: dict[str, Any], spec: PolicySpec | None = None) -> Any:
    resources, _ = assess.summarize([gpu(0, measured=measured)], spec or PolicySpec())
    return resources[0]


def test_noise_larger_than_the_gain_never_recommends() -> None:
    # Median gain +5%, but rounds swing +-8%: the lower bound is far below 3%.
    rng = random.Random(7)
    default = [[1.0] * 10 for _ in range(2)]
    noisy = [[1 / (1.05 + rng.uniform(-0.08, 0.08)) for _ in range(10)] for _ in range(2)]
    r = _one_gpu(_explicit(default, noisy))
    assert r.recommended_mode is Mode.DEFAULT
    assert r.gain_low is not None and r.gain_low < 0.03 < r.measured_gain
    assert "lower bound" in r.advice and "< minimum 3.0%" in r.advice


def test_a_clear_gain_is_recommended_with_its_interval_and_break_even() -> None:
    rng = random.Random(8)
    default = [[1e-3 * (1 + rng.uniform(-0.003, 0.003)) for _ in range(10)] for _ in range(2)]
    fast = [[d / 1.08 * (1 + rng.uniform(-0.003, 0.003)) for d in p] for p in default]
    r = _one_gpu(_explicit(default, fast))
    assert r.recommended_mode is Mode.MAX_AUTOTUNE and r.mode is Mode.MAX_AUTOTUNE
    assert r.gain_low is not None and r.gain_high is not None
    assert 0.07 < r.gain_low <= r.measured_gain <= r.gain_high < 0.09
    assert r.extra_compile_seconds == pytest.approx(7.0)
    # 7 s extra against (1 ms * low / (1 + low)) saved per step.
    saved = 1e-3 * r.gain_low / (1 + r.gain_low)
    assert r.break_even_steps is not None and abs(r.break_even_steps - 7.0 / saved) < 150
    assert f"{r.break_even_steps:,} steps" in r.advice
    assert "2 processes x 10 rounds" in r.advice


def test_the_same_rounds_in_another_order_give_the_same_advice() -> None:
    rng = random.Random(9)
    default = [[1e-3 * (1 + rng.uniform(-0.01, 0.01)) for _ in range(10)] for _ in range(2)]
    mode = [[1e-3 / 1.04 * (1 + rng.uniform(-0.01, 0.01)) for _ in range(10)] for _ in range(2)]
    first = _one_gpu(_explicit(default, mode))
    order = list(range(10))
    rng.shuffle(order)
    # Rounds keep their pairing (a round is one moment in time) but come in another order,
    # and the processes swap places.
    shuffled_default = [[default[p][i] for i in order] for p in (1, 0)]
    shuffled_mode = [[mode[p][i] for i in order] for p in (1, 0)]
    second = _one_gpu(_explicit(shuffled_default, shuffled_mode))
    assert (first.recommended_mode, first.gain_low, first.gain_high) == (
        second.recommended_mode,
        second.gain_low,
        second.gain_high,
    )
    assert first.measured_gain == pytest.approx(second.measured_gain)


def test_one_timing_process_is_not_enough_to_recommend() -> None:
    default = [[1.0] * 10]
    fast = [[1 / 1.2] * 10]
    r = _one_gpu(_explicit(default, fast))
    assert r.recommended_mode is Mode.DEFAULT
    assert "1 process(es), 2 needed" in r.advice


def test_compile_cost_bounds_from_the_policy() -> None:
    default = [[1e-3] * 10] * 2
    fast = [[1e-3 / 1.10] * 10] * 2  # +10%, 20 s more compile: 220,000 steps of 1 ms
    measured = _explicit(default, fast, compile_default=5.0, compile_mode=25.0)
    assert _one_gpu(measured).recommended_mode is Mode.MAX_AUTOTUNE
    assert _one_gpu(measured).break_even_steps == 220_000
    capped = _one_gpu(measured, PolicySpec(max_extra_compile_seconds=15))
    assert capped.recommended_mode is Mode.DEFAULT
    assert "20.0 s extra compile > the policy's 15 s" in capped.advice
    short_runs = _one_gpu(measured, PolicySpec(max_break_even_steps=100_000))
    assert short_runs.recommended_mode is Mode.DEFAULT
    assert "pays back after 220,000 steps > the policy's 100,000" in short_runs.advice
    assert _one_gpu(measured, PolicySpec(max_break_even_steps=300_000)).recommended_mode is (
        Mode.MAX_AUTOTUNE
    )


def test_of_two_qualifying_modes_the_better_assured_wins_and_each_is_explained() -> None:
    gpus = [gpu(0, gains={"max-autotune-no-cudagraphs": 0.10, "max-autotune": 0.06})]
    r = assess.summarize(gpus, PolicySpec())[0][0]
    assert r.recommended_mode is Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS
    assert {a.mode: a.recommended for a in r.modes} == {
        Mode.MAX_AUTOTUNE_NO_CUDAGRAPHS: True,
        Mode.MAX_AUTOTUNE: True,
    }


def test_an_unmeasured_sibling_is_judged_by_its_class_but_a_failed_one_is_not() -> None:
    measured = [gpu(i, gains={"max-autotune": 0.08}) for i in (0, 1)]
    pending = gpu(2)  # busy: no measurement yet
    assert assess.summarize([*measured, pending], PolicySpec())[1].recommended_mode is (
        Mode.MAX_AUTOTUNE
    )
    failed = gpu(2, measured={"ok": False, "reason": "OutOfMemory", "block": "transformer"})
    r = assess.summarize([*measured, failed], PolicySpec())[0][0]
    assert r.recommended_mode is Mode.DEFAULT
    assert "training reference failed (OutOfMemory" in r.advice


def test_the_inference_mlp_alone_never_carries_advice() -> None:
    mlp = training({"max-autotune": 0.2})
    g = gpu(0)
    g = g.model_copy(update={"measurements": Measurements.model_validate({"compile": mlp})})
    r = assess.summarize([g], PolicySpec())[0][0]
    assert r.recommended_mode is Mode.DEFAULT
    assert "training reference not measured" in r.advice


# ---------------------------------------------------------------- MIG, both strategies


def test_single_strategy_slices_are_what_nvidia_com_gpu_gets() -> None:
    gpus = [gpu(i, mig=[("1g.10gb", 16)] * 7, strategy="single") for i in range(2)]
    resources, summary = assess.summarize(gpus, PolicySpec())
    assert [r.name for r in resources] == [names.RESOURCE_GPU]
    r = resources[0]
    assert (r.count, r.sm_count, r.capable, r.mig_profile) == (14, 16, False, "1g.10gb")
    assert r.gpu_class == "nvidia-h100-80gb-hbm3-mig-1g.10gb-16sm"
    labels = assess.node_labels(status(gpus), PolicySpec(), NOW)
    assert labels[names.LABEL_SM_COUNT] == "16" and labels[names.LABEL_CAPABLE] == "false"
    assert labels[names.LABEL_CLASS] == r.gpu_class
    assert summary.recommended_mode is Mode.DEFAULT


def _measured_slice(strategy: str, gains: dict[str, float] | None) -> Gpu:
    g = gpu(0, mig=[("7g.80gb", 132)], strategy=strategy)
    slice_ = g.mig_instances[0].model_copy(
        update={
            "measurements": Measurements.model_validate(
                {"gemm": [{"ok": True, "size": 4096}], "training": training(gains)}
                if gains is not None
                else {"gemm": [{"ok": False, "size": 4096, "reason": "TritonCompileFailed"}]}
            )
        }
    )
    return g.model_copy(update={"mig_instances": [slice_]})


def test_a_measured_7g_slice_gets_advice_under_either_strategy() -> None:
    mixed = assess.summarize([_measured_slice("mixed", {"max-autotune": 0.09})], PolicySpec())
    assert [(r.name, r.capable, r.recommended_mode) for r in mixed[0]] == [
        ("nvidia.com/mig-7g.80gb", True, Mode.MAX_AUTOTUNE)
    ]
    assert not mixed[1].capable  # mixed: the node labels describe whole GPUs; there are none
    single = assess.summarize([_measured_slice("single", {"max-autotune": 0.09})], PolicySpec())
    assert [(r.name, r.capable, r.recommended_mode) for r in single[0]] == [
        ("nvidia.com/gpu", True, Mode.MAX_AUTOTUNE)
    ]
    assert single[1].capable and single[1].recommended_mode is Mode.MAX_AUTOTUNE


def test_a_slice_whose_triton_check_failed_is_not_capable() -> None:
    resources, _ = assess.summarize([_measured_slice("single", None)], PolicySpec())
    assert not resources[0].capable


def test_slices_the_device_plugin_does_not_advertise_are_no_resource() -> None:
    g = gpu(0, mig=[("7g.80gb", 132)])
    hidden = g.model_copy(
        update={"mig_instances": [g.mig_instances[0].model_copy(update={"resource": None})]}
    )
    assert assess.summarize([hidden], PolicySpec())[0] == []
