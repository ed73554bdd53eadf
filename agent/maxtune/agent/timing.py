"""The timing protocol's torch-free half: round order, device checks, merging processes.

The worker (compile_bench, with torch) times; the agent's parent process (no torch)
merges what its workers sent into the published measurement. What both must agree on
lives here: the names of the reference blocks, the order modes are timed in, the shape
of a worker's raw block result, and how a cold and a warm process combine
(docs/decisions/0012-stable-gains.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maxtune.agent.failures import Reason
from maxtune.contract.models import CompileMeasurement, Workload
from maxtune.contract.modes import Mode
from maxtune.contract.rounds import BlockRounds, ModeRounds, compile_measurement

WORKLOADS: tuple[Workload, ...] = ("training", "inference")  # measured in this order
ROUNDS = 10  # interleaved rounds per process
CALLS = {"training": 20, "inference": 20}  # timed calls per mode and round
WARMUP_CALLS = 2  # untimed calls before each mode's calls in a round
EAGER = "eager"  # eager is timed in the rounds too, as a reference; no gain is taken from it


def round_order(names: Sequence[str], index: int) -> list[str]:
    """Forward on even rounds, reversed on odd ones: a mode timed last in one round is timed
    first in the next, so a linear drift over a pair of rounds hits every mode alike."""
    return list(names) if index % 2 == 0 else list(reversed(names))


def uuid_hex(uuid: str) -> str:
    """`GPU-1a2b...` / `MIG-1a2b...` / `1a2b...` -> `1a2b...` (lower case, no prefix)."""
    text = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        text = text.removeprefix(prefix)
    return text


def device_mismatch(
    *,
    seen_uuid: str,
    seen_sms: int,
    expect_uuid: str | None,
    expect_parent: str | None = None,
    expect_sms: int | None = None,
) -> str | None:
    """Why the device CUDA shows is not the one asked for; None when it is.

    A MIG slice is asked for by its `MIG-` UUID. CUDA may report that UUID or, through
    older interfaces, the parent GPU's; the slice's SM count then tells it from the parent
    GPU (which is not usable for CUDA work in MIG mode anyway).
    """
    if expect_uuid is None:
        return None
    accepted = {uuid_hex(expect_uuid)} | ({uuid_hex(expect_parent)} if expect_parent else set())
    if uuid_hex(seen_uuid) not in accepted:
        return f"asked to measure {expect_uuid} but CUDA shows {seen_uuid}"
    if expect_sms is not None and seen_sms != expect_sms:
        return f"asked to measure {expect_uuid} ({expect_sms} SMs) but CUDA shows {seen_sms} SMs"
    return None


def failed(workload: Workload, block: str, reason: str, message: str) -> CompileMeasurement:
    return CompileMeasurement(
        ok=False, reason=reason, message=message[:4000], block=block, workload=workload
    )


def _modes(raw: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(m["mode"]): m for m in raw.get("modes", [])}


def merge(cold: Mapping[str, Any], warm: Mapping[str, Any] | None) -> CompileMeasurement:
    """One block's measurement from the cold process and (when it completed) the warm one.

    A raw block is what compile_bench sends: ok, block, workload, calls_per_round,
    eager_rounds, problems, and per mode its compile seconds and round step times. The
    warm process counts only when it timed every mode the cold one did, the same number
    of rounds; otherwise the measurement is the cold process's alone and says why.
    """
    workload: Workload = "training" if cold.get("workload") == "training" else "inference"
    block = str(cold.get("block", "?"))
    if not cold.get("ok"):
        return failed(
            workload,
            block,
            str(cold.get("reason") or Reason.FAILED.value),
            str(cold.get("message") or "the block could not be measured"),
        )
    problems = [str(p) for p in cold.get("problems", [])]
    cold_modes = _modes(cold)
    warm_modes = _modes(warm) if warm is not None and warm.get("ok") else {}
    use_warm = bool(warm_modes)
    if warm is None:
        problems.append("second process: not run")
    elif not warm.get("ok"):
        problems.append(f"second process: {warm.get('reason')}: {warm.get('message')}")
    else:
        problems += [f"second process: {p}" for p in warm.get("problems", [])]
        lengths = {len(m["rounds"]) for m in [*cold_modes.values(), *warm_modes.values()]}
        missing = sorted(set(cold_modes) - set(warm_modes))
        if missing or len(lengths) != 1:
            use_warm = False
            problems.append(
                "second process left out: it did not time "
                + (", ".join(missing) if missing else "as many rounds")
            )
    modes = []
    for name, m in cold_modes.items():
        w = warm_modes.get(name) if use_warm else None
        rounds = (tuple(m["rounds"]),) + ((tuple(w["rounds"]),) if w is not None else ())
        modes.append(
            ModeRounds(
                mode=Mode(name),
                compile_seconds=float(m["compile_seconds"]),
                warm_compile_seconds=float(w["compile_seconds"]) if w is not None else None,
                rounds=tuple(tuple(float(s) for s in r) for r in rounds),
            )
        )
    eager = [tuple(cold.get("eager_rounds", []))]
    if use_warm and warm is not None:
        eager.append(tuple(warm.get("eager_rounds", [])))
    return compile_measurement(
        BlockRounds(
            block=block,
            workload=workload,
            calls_per_round=int(cold.get("calls_per_round", 0)),
            modes=tuple(modes),
            eager_rounds=tuple(tuple(float(s) for s in r) for r in eager if r),
            problems=tuple(problems),
        )
    )
