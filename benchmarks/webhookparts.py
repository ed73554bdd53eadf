"""Pieces of the webhook benchmark: its MutatingWebhookConfiguration, probes, child processes.

The configuration is shaped like the chart's (two entries, pod and namespace
opt-in, failurePolicy Ignore, timeoutSeconds 2), pointing at the operator's
URL on 127.0.0.1 with the benchmark CA as caBundle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.creators import DECISION, user_pod
from benchmarks.kubeapi import WEBHOOKS, Api
from maxtune.operator import registration

CONFIG_NAME = "maxtune-bench"


def webhook_configuration(url: str, ca_pem: bytes, excluded: list[str]) -> dict[str, Any]:
    """The operator's own URL registration, with a 2 s timeout (the chart's is 3 s)."""
    return registration.webhook_configuration(CONFIG_NAME, url, ca_pem, excluded, timeout_seconds=2)


async def set_webhook(
    api: Api,
    namespace: str,
    body: dict[str, Any] | None,
    expect: str | None = "maxtune",
    *,
    timeout_s: float = 60,
) -> float:
    """Register (body) or remove (None) the webhook, then wait until pod creates show it.

    Whatever was registered before is removed first (arms follow each other). The API
    server picks configuration changes up from a watch; a probe pod is created (and
    deleted) until its decision annotation says who answered: `expect` "maxtune" (any
    decision but the reference's), "reference", or None (no annotation: no webhook).
    Returns the seconds it took.
    """
    started = time.monotonic()
    await api.call("DELETE", f"{WEBHOOKS}/{CONFIG_NAME}", ok=(404,))
    if body is not None:
        await api.call("POST", WEBHOOKS, body)
    path = f"/api/v1/namespaces/{namespace}/pods"
    for attempt in range(10**6):
        pod = await api.call("POST", path, user_pod(f"probe-{int(started)}-{attempt}"))
        name = pod["metadata"]["name"]
        await api.call("DELETE", f"{path}/{name}", {"gracePeriodSeconds": 0}, ok=(404,))
        seen = (pod["metadata"].get("annotations") or {}).get(DECISION)
        who = None if seen is None else "reference" if seen == "reference" else "maxtune"
        if who == expect:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the webhook's change to {expect or 'none'} not seen")
        await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def delete_pods(api: Api, namespace: str, *, timeout_s: float = 120) -> float:
    """Delete every pod of the namespace at once (no grace) and wait until they are gone."""
    started = time.monotonic()
    path = f"/api/v1/namespaces/{namespace}/pods"
    await api.call("DELETE", path, {"gracePeriodSeconds": 0})
    while True:
        answer = await api.call("GET", path, query={"limit": "1"})
        if not answer.get("items"):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"pods of {namespace} not gone after {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


async def preflight(url: str, ca: Path, bodies: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """One request per shape: whether the answer carries a patch, and the decision it explains."""
    context = ssl.create_default_context(cafile=str(ca))
    found: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        for shape, body in bodies.items():
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                answer = (await response.json())["response"]
            patch = json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []
            decision = next(
                (
                    op["value"]
                    for op in patch
                    if str(op.get("path", "")).endswith("maxtune.io~1decision")
                ),
                None,
            )
            found[shape] = {
                "patched": "patch" in answer,
                "operations": len(patch),
                "decision": decision,
            }
    return found


def run_child(module: str, config: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """`python -m MODULE CONFIG RESULT` in a process of its own; its result and pid."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as folder:
        config_path, result_path = Path(folder) / "config.json", Path(folder) / "result.json"
        config_path.write_text(json.dumps(config))
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(config_path), str(result_path)],
            cwd=Path(__file__).resolve().parents[1],
        )
        if proc.wait() != 0:
            raise RuntimeError(f"{module} failed with exit code {proc.returncode}")
        return json.loads(result_path.read_text()), proc.pid
