"""AdmissionReviews straight to a webhook through vegeta, an established Go load generator.

The hand-written generator (benchmarks/loadgen.py) is Python on the same two
cores as the server it measures; at 200 requests/s it reported a p99 three
times the server's own. vegeta (built from its Go module like the plane's
binaries: maxtune_dev.localplane.versions.VEGETA) paces an open loop without
coordinated omission (it starts more workers rather than send late), keeps its
connections alive, verifies the webhook's certificate against its CA as the API
server does, and records every answer: latency, status and body.

Every answer is checked as loadgen checks it: HTTP 200, an AdmissionReview
whose uid is the request's, allowed, and a patch exactly when the shape's
preflight answer had one. Each shape is sent with a uid of its own, so an
answer names its shape. The result has loadgen's fields, so one report reads
both.
"""

from __future__ import annotations

import base64
import json
import resource
import subprocess
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.reviews import UID_PLACEHOLDER
from benchmarks.stats import latency_summary
from maxtune_dev.localplane.build import ensure_component
from maxtune_dev.localplane.versions import VEGETA

TIMEOUT = "10s"


def binary() -> Path:
    """vegeta from the binary cache, built the first time (Go module proxy)."""
    _, folder = ensure_component(VEGETA)
    return folder / "vegeta"


def shape_uid(index: int) -> str:
    return f"{UID_PLACEHOLDER[:-12]}{index:012d}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Vegeta:
    """One webhook URL, its CA, the review bodies by shape and the order they are sent in."""

    def __init__(
        self,
        url: str,
        ca: Path,
        *,
        bodies: dict[str, bytes],
        expect_patch: dict[str, bool],
        order: list[str],
        work: Path,
    ) -> None:
        self.exe = binary()
        self.url = url
        self.ca = ca
        self.expect_patch = expect_patch
        self.work = work
        self.uids = {shape: shape_uid(i) for i, shape in enumerate(bodies)}
        self.shapes = {uid: shape for shape, uid in self.uids.items()}
        lines = []
        for shape in order:
            path = work / f"review-{shape}.json"
            if not path.exists():
                body = bodies[shape].replace(UID_PLACEHOLDER.encode(), self.uids[shape].encode(), 1)
                path.write_bytes(body)
            lines += [f"POST {url}", "Content-Type: application/json", f"@{path}", ""]
        self.targets = work / "targets.txt"
        self.targets.write_text("\n".join(lines) + "\n")

    def attack(self, step: dict[str, Any], duration_s: float) -> tuple[Path, float, float]:
        """Run one attack; the results file, the seconds it took and vegeta's CPU seconds."""
        out = Path(tempfile.mkstemp(prefix="vegeta-", suffix=".bin", dir=self.work)[1])
        workers = step.get("concurrency")
        pace = (
            [f"-rate={step['rate']:g}/1s"]
            if step["mode"] == "open"
            else ["-rate=0", f"-workers={workers}", f"-max-workers={workers}"]
        )
        command = [
            str(self.exe),
            "attack",
            f"-targets={self.targets}",
            f"-duration={duration_s:g}s",
            f"-root-certs={self.ca}",
            f"-timeout={TIMEOUT}",
            "-keepalive=true",
            f"-output={out}",
            *pace,
        ]
        cpu = _children_cpu()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"vegeta attack failed ({done.returncode}): {done.stderr[-2000:]}")
        return out, duration_s, _children_cpu() - cpu

    def results(self, path: Path) -> list[dict[str, Any]]:
        done = subprocess.run(
            [str(self.exe), "encode", "-to", "json", str(path)],
            capture_output=True,
            check=True,
        )
        path.unlink(missing_ok=True)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def check(self, hit: dict[str, Any]) -> tuple[str, str]:
        """(shape, error); error "" when the answer is right."""
        if hit.get("error"):
            return "?", f"transport: {str(hit['error'])[:80]}"
        if int(hit.get("code", 0)) != 200:
            return "?", f"http {hit.get('code')}"
        try:
            answer = json.loads(base64.b64decode(hit.get("body") or ""))["response"]
        except (ValueError, KeyError, TypeError):
            return "?", "not an AdmissionReview"
        shape = self.shapes.get(str(answer.get("uid")))
        if shape is None:
            return "?", "uid not echoed"
        if answer.get("allowed") is not True:
            return shape, "not allowed"
        if ("patch" in answer) != self.expect_patch[shape]:
            return shape, "patch differs from preflight"
        return shape, ""

    def step(self, step: dict[str, Any]) -> dict[str, Any]:
        """Warm up (answers dropped), then the measured attack; loadgen's result fields."""
        if step.get("warmup_s"):
            warm, _, _ = self.attack(step, float(step["warmup_s"]))
            warm.unlink(missing_ok=True)
        path, _, cpu_s = self.attack(step, float(step["duration_s"]))
        hits = self.results(path)
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        by_shape: dict[str, list[float]] = {}
        first, last = float("inf"), 0.0
        for hit in hits:
            shape, error = self.check(hit)
            seconds = int(hit["latency"]) / 1e9
            began = _timestamp(hit["timestamp"])
            first, last = min(first, began), max(last, began + seconds)
            if error:
                errors[error] += 1
                continue
            latencies.append(seconds)
            by_shape.setdefault(shape, []).append(seconds)
        window = max(last - first, 1e-9) if hits else 0.0
        summary = latency_summary(latencies)
        return {
            "name": step["name"],
            "mode": step["mode"],
            "client": "vegeta",
            "target_rate": step.get("rate") or None,
            "concurrency": step.get("concurrency") or None,
            "duration_s": step["duration_s"],
            "sent": len(hits),
            "ok": len(latencies),
            "errors": dict(errors),
            "error_count": sum(errors.values()),
            "window_s": round(window, 3),
            "achieved_rps": round(len(latencies) / window, 1) if window else 0.0,
            "latency": summary,
            # vegeta starts a request when it is due (more workers rather than late ones)
            "latency_from_due": summary,
            "by_shape": {s: latency_summary(v) for s, v in sorted(by_shape.items())},
            "max_send_lag_ms": None,
            "client_cpu_s": round(cpu_s, 3),
        }


def _timestamp(text: str) -> float:
    """RFC 3339 with nanoseconds (vegeta's) to POSIX seconds; float precision is enough."""
    head, _, rest = text.partition(".")
    frac, zone = rest, ""
    for sign in ("Z", "+", "-"):
        if sign in rest:
            frac, _, tail = rest.partition(sign)
            zone = sign + tail if sign != "Z" else "+00:00"
            break
    moment = datetime.fromisoformat(f"{head}{zone or '+00:00'}")
    return moment.timestamp() + (float(f"0.{frac}") if frac else 0.0)
