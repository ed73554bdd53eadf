"""From devices to summaries and node labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from maxtune.contract import assess, names
from maxtune.contract.gpuclass import gpu_class, mixed_class
from maxtune.contract.models import Gpu, PolicySpec, ProfileStatus
from maxtune.contract.modes import Mode

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"


def _verdict(capable: bool = True) -> dict[str, Any]:
    return {"capable": capable, "rule": "test", "torchVersion": "2.11"}


def gpu(
    index: int,
    sms: int | None = 132,
    product: str = H100,
    *,
    gains: dict[str, float] | None = None,
    gemm_ok: bool | None = None,
    mig: list[tuple[str, int]] | None = None,
) -> Gpu:
    measurements: dict[str, Any] = {}
    if gains is not None:
        measurements["compile"] = {
            "ok": True,
            "block": "mlp",
            "modes": [
                {"mode": m, "stepSeconds": 0.001, "compileSeconds": 5.0, "gain": g}
                for m, g in {"default": 0.0, **gains}.items()
            ],
        }
    if gemm_ok is not None:
        measurements["gemm"] = [{"ok": gemm_ok, "size": 4096}]
    instances = [
        {
            "profile": profile,
            "resource": names.mig_resource(profile),
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
    assert resources[0].measured_gain == -0.01


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
