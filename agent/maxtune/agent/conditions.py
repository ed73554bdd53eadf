"""The profile's conditions: Inventoried, GemmMeasured, CompileMeasured, Ready.

Pure functions of the inventory, the measurement state and the clock. Each condition's
lastTransitionTime moves only when its status does. The measured conditions look at the
devices the agent measures (targets.py: whole GPUs and gate-passing MIG slices), and
CompileMeasured quotes the training reference's gains with their intervals, the numbers
the advice rests on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from maxtune.agent.inventory import Inventory
from maxtune.agent.migstrategy import REASON_INVALID
from maxtune.agent.targets import Target
from maxtune.contract.models import CompileMeasurement, Condition, Measurements

if TYPE_CHECKING:
    from maxtune.agent.profile import MeasurementState

LEVELS: tuple[str, ...] = ("inventory", "gemm", "full")
INVENTORIED = "Inventoried"
GEMM_MEASURED = "GemmMeasured"
COMPILE_MEASURED = "CompileMeasured"
READY = "Ready"
CONDITION_TYPES = (INVENTORIED, GEMM_MEASURED, COMPILE_MEASURED, READY)


def _cond(kind: str, ok: bool, reason: str, message: str, now: datetime) -> Condition:
    return Condition(
        type=kind,
        status="True" if ok else "False",
        reason=reason,
        message=message[:4000],
        last_transition_time=now,
    )


def inventoried(
    inventory: Inventory, node: str, now: datetime, layout_problem: str | None = None
) -> Condition:
    whole = sum(1 for g in inventory.gpus if not g.mig_enabled)
    slices = sum(len(g.mig) for g in inventory.gpus)
    found = f"{len(inventory.gpus)} GPU(s): {whole} whole, {slices} MIG instance(s)"
    if inventory.source == "none" or (not inventory.gpus and inventory.problems):
        why = "; ".join(m for _, m in inventory.problems) or "no GPU found"
        reason = inventory.problems[0][0] if inventory.problems else "NoGPU"
        return _cond(INVENTORIED, False, reason, f"no GPU on this node: {why}", now)
    if inventory.problems:
        reason = inventory.problems[0][0]
        detail = "; ".join(m for _, m in inventory.problems)
        return _cond(INVENTORIED, False, reason, f"{found}; incomplete: {detail}", now)
    if layout_problem is not None:
        return _cond(INVENTORIED, False, REASON_INVALID, f"{found}; {layout_problem}", now)
    if inventory.source == "simulation":
        return _cond(
            INVENTORIED,
            True,
            "Simulated",
            f"SIMULATED from fleet file {inventory.simulation} as node {node}, not real "
            f"hardware: {found}",
            now,
        )
    if not inventory.gpus:
        return _cond(INVENTORIED, False, "NoGPU", "NVML lists no GPU on this node", now)
    return _cond(INVENTORIED, True, "Inventoried", found, now)


def _gains(block: CompileMeasurement) -> str:
    parts = [
        f"{t.mode.value} {t.gain:+.1%}"
        + (
            f" [{t.gain_low:+.1%}, {t.gain_high:+.1%}]"
            if t.gain_low is not None and t.gain_high is not None
            else ""
        )
        for t in block.modes
        if t.mode.value != "default"
    ]
    return f"{block.workload} {', '.join(parts) or 'default only'}"


def _compile_state(
    label: str, found: Measurements | None, failures: list[tuple[str, str]], notes: list[str]
) -> bool:
    """Record a device's two blocks; False when one is still missing."""
    if found is None or found.training is None or found.compile is None:
        return False
    shown = []
    for block in (found.training, found.compile):
        if not block.ok:
            failures.append(
                (block.reason or "MeasurementFailed", f"{label} {block.workload}: {block.message}")
            )
        else:
            shown.append(_gains(block))
    if shown:
        notes.append(f"{label}: {'; '.join(shown)}")
    return True


def measured(
    kind: str,
    *,
    inventory: Inventory,
    devices: Sequence[Target],
    level: str,
    state: MeasurementState,
    now: datetime,
) -> Condition:
    wants = "gemm" if kind == GEMM_MEASURED else "full"
    what = "reference GEMM" if kind == GEMM_MEASURED else "torch.compile comparison"
    if LEVELS.index(level) < LEVELS.index(wants):
        return _cond(kind, False, "NotRequested", f"level {level}: the {what} is not run", now)
    if not devices:
        if inventory.gpus:
            return _cond(
                kind,
                False,
                "NoMeasurableDevice",
                "every GPU is in MIG mode and no MIG slice passes the gate; slices below it "
                "are not measured",
                now,
            )
        return _cond(kind, False, "NoGPU", "no GPU to measure", now)
    failures: list[tuple[str, str]] = []
    pending: list[str] = []
    notes: list[str] = []
    for device in devices:
        found = state.by_gpu.get(device.uuid)
        if kind == GEMM_MEASURED:
            results = found.gemm if found else []
            if not results:
                pending.append(device.label)
                continue
            for m in results:
                if m.ok:
                    notes.append(f"{device.label} {m.size}: {m.ratio_to_cublas:.1%} of cuBLAS")
                else:
                    failures.append(
                        (m.reason or "MeasurementFailed", f"{device.label} {m.size}: {m.message}")
                    )
        elif not _compile_state(device.label, found, failures, notes):
            pending.append(device.label)
    if failures:
        return _cond(kind, False, failures[0][0], "; ".join(m for _, m in failures), now)
    if pending:
        busy = [state.skipped[d.uuid] for d in devices if d.uuid in state.skipped]
        if busy:
            return _cond(kind, False, busy[0][0], "; ".join(m for _, m in busy), now)
        return _cond(kind, False, "Pending", f"not measured yet: {', '.join(pending)}", now)
    prefix = "SIMULATED " if inventory.source == "simulation" else ""
    return _cond(kind, True, "Measured", prefix + "; ".join(notes), now)


def conditions(
    *,
    inventory: Inventory,
    devices: Sequence[Target],
    level: str,
    state: MeasurementState,
    node: str,
    previous: Sequence[Condition],
    now: datetime,
    layout_problem: str | None = None,
) -> list[Condition]:
    fresh = [
        inventoried(inventory, node, now, layout_problem),
        *(
            measured(kind, inventory=inventory, devices=devices, level=level, state=state, now=now)
            for kind in (GEMM_MEASURED, COMPILE_MEASURED)
        ),
    ]
    ok = fresh[0].status == "True"
    requested = [c for c in fresh[1:] if c.reason != "NotRequested"]
    waiting = [c for c in requested if c.reason in ("Pending", "GPUBusy")]
    if not ok:
        ready = _cond(READY, False, "InventoryFailed", fresh[0].message, now)
    elif waiting:
        ready = _cond(READY, False, "MeasurementPending", waiting[0].message, now)
    else:
        ready = _cond(READY, True, "ProfileComplete", f"level {level} profile complete", now)
    fresh.append(ready)
    return keep_transition_times(fresh, previous)


def keep_transition_times(
    fresh: Sequence[Condition], previous: Sequence[Condition]
) -> list[Condition]:
    """A condition whose status did not change keeps its lastTransitionTime."""
    before = {c.type: c for c in previous}
    out = []
    for cond in fresh:
        old = before.get(cond.type)
        if old is not None and old.status == cond.status:
            out.append(cond.model_copy(update={"last_transition_time": old.last_transition_time}))
        else:
            out.append(cond)
    return out
