"""`maxtune probe` (this machine's GPUs) and `maxtune agent` (the DaemonSet entry point).

Both import the agent's modules inside their handlers: `maxtune explain` and the
operator image (no torch, no NVML) must not pay for them. Neither imports torch
in this process: SM counts and measurements run in child processes.

Exit codes: 0 when the command did its job, including "this machine has no
GPU" (an empty inventory is an answer, not an error: a DaemonSet on a CPU node
must not crash-loop); 2 for bad input (flags, fleet file, cluster config);
1 when `agent --once` could not publish.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

LEVEL_CHOICES = ("inventory", "gemm", "full")


def register(subparsers: Any) -> None:
    probe = subparsers.add_parser(
        "probe",
        help="this machine's GPUs, SM counts and max-autotune verdicts (no cluster needed)",
        description="Inventory this machine's GPUs (NVML, CUDA driver) and show the verdict of "
        "torch's max-autotune gate for each; optionally run the reference measurements.",
    )
    probe.add_argument("--json", action="store_true", help="print the profile status as JSON")
    probe.add_argument("--level", choices=LEVEL_CHOICES, default="inventory")
    probe.add_argument("--simulate", type=Path, metavar="FLEET_FILE", help="a simulated fleet")
    probe.add_argument("--node", help="with --simulate: which node of the fleet to show")
    probe.add_argument("--torch", help="torch MAJOR.MINOR whose gate applies (default: installed)")
    _mig_strategy_flag(probe)
    probe.set_defaults(handler=run_probe)

    agent = subparsers.add_parser(
        "agent",
        help="run the node agent (DaemonSet entry point)",
        description="Inventory and measure this node's GPUs, publish its GPUNodeProfile, and "
        "serve /metrics, /healthz and /readyz.",
    )
    agent.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="env NODE_NAME")
    agent.add_argument(
        "--kubeconfig", help="default: in-cluster config, then $KUBECONFIG, then ~/.kube/config"
    )
    agent.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="heartbeat through a Lease named after the node in this namespace (env "
        "POD_NAMESPACE; the chart sets it); without it the heartbeat patches the profile",
    )
    agent.add_argument("--level", choices=LEVEL_CHOICES, default="full")
    agent.add_argument("--simulate", type=Path, metavar="FLEET_FILE")
    agent.add_argument("--metrics-host", default="0.0.0.0")
    agent.add_argument("--metrics-port", type=int, default=9400)
    agent.add_argument("--interval", type=float, default=60.0, metavar="SECONDS")
    agent.add_argument("--once", action="store_true", help="one round (measure, publish), exit")
    agent.add_argument(
        "--profile-file",
        type=Path,
        help="write the profile to this file instead of the API server (no cluster)",
    )
    agent.add_argument(
        "--measurement-log",
        type=Path,
        help="write every trial, stage time and worker log tail of each measurement here",
    )
    agent.add_argument(
        "--compile-cache-url",
        action="append",
        metavar="GROUP=URL",
        help="a sharing group's compile cache to prove in the full profile (repeatable; a bare "
        "redis:// URL is group 'default'); env MAXTUNE_COMPILE_CACHE_URL holds the same, "
        "separated by spaces (the chart fills it from the agent Secret)",
    )
    agent.add_argument(
        "--compile-cache-mode",
        default="max-autotune-no-cudagraphs",
        help="torch.compile mode of the cache proof's two compiles",
    )
    agent.add_argument("--log-level", default="INFO")
    _mig_strategy_flag(agent)
    agent.set_defaults(handler=run_agent)


def _mig_strategy_flag(parser: Any) -> None:
    parser.add_argument(
        "--mig-strategy",
        default=os.environ.get("MIG_STRATEGY", "mixed"),
        help="how the NVIDIA device plugin schedules MIG slices on this node: none, single "
        "(each slice is an nvidia.com/gpu) or mixed (nvidia.com/mig-<profile>); "
        "env MIG_STRATEGY, as for GPU Feature Discovery; default mixed. A fleet file's "
        "node may set its own (migStrategy)",
    )


def _strategy(value: str) -> Any:
    """The parsed strategy; ValueError with the flag's name for anything else."""
    from maxtune.agent import migstrategy  # noqa: PLC0415

    try:
        return migstrategy.parse(value)
    except ValueError as exc:
        raise ValueError(f"--mig-strategy / MIG_STRATEGY: {exc}") from None


def _fail(command: str, message: str) -> int:
    print(f"maxtune {command}: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------- probe


def run_probe(args: argparse.Namespace) -> int:
    from maxtune.agent import backends, report  # noqa: PLC0415
    from maxtune.agent.fleetfile import FleetError  # noqa: PLC0415
    from maxtune.agent.profile import MeasurementState, build_status, local_policy_spec  # noqa: PLC0415
    from maxtune.contract import gate  # noqa: PLC0415
    from maxtune.contract.models import TorchRule  # noqa: PLC0415

    if args.node and args.simulate is None:
        return _fail("probe", "--node only makes sense with --simulate")
    try:
        strategy = _strategy(args.mig_strategy)
    except ValueError as exc:
        return _fail("probe", str(exc))
    try:
        backend = backends.select(simulate=args.simulate, node_name=args.node)
    except (FleetError, ValueError) as exc:
        return _fail("probe", str(exc))
    spec = local_policy_spec()
    if args.torch:
        try:
            major, minor = gate.parse_torch_version(args.torch)
        except gate.TorchVersionError as exc:
            return _fail("probe", str(exc))
        spec = spec.model_copy(update={"torch": TorchRule(version=f"{major}.{minor}")})
    try:
        inventory = backend.inventory()
        state = MeasurementState()
        if args.level != "inventory" and inventory.gpus:
            if not args.json and backend.source == "nvml":
                print(
                    f"measuring at level {args.level} (about a minute per GPU, in parallel)...",
                    file=sys.stderr,
                )
            for uuid, outcome in backend.measure(inventory, args.level).items():
                if outcome.measurements is not None:
                    state.by_gpu[uuid] = outcome.measurements
                if outcome.skipped is not None:
                    state.skipped[uuid] = outcome.skipped
        from maxtune.agent.daemon import utc_now  # noqa: PLC0415

        status = build_status(
            inventory=inventory,
            software=backend.software(inventory),
            level=args.level,
            spec=spec,
            state=state,
            node=args.node or os.uname().nodename,
            previous=None,
            now=utc_now(),
            mig_strategy=backend.mig_strategy() or strategy,
            devices=backend.targets(inventory),
        )
    finally:
        backend.close()
    if args.json:
        print(json.dumps(status.wire(), indent=2))
    else:
        print(report.render(status, spec))
    return 0


# ---------------------------------------------------------------------- agent


def run_agent(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.node_name:
        return _fail("agent", "--node-name (or env NODE_NAME) is required")
    if args.interval <= 0:
        return _fail("agent", "--interval must be > 0 seconds")
    if not 0 <= args.metrics_port <= 65535:
        return _fail("agent", f"--metrics-port {args.metrics_port} is not a port")
    try:
        strategy = _strategy(args.mig_strategy)
    except ValueError as exc:
        return _fail("agent", str(exc))

    from maxtune.agent import backends  # noqa: PLC0415
    from maxtune.agent.daemon import Agent  # noqa: PLC0415
    from maxtune.agent.endpoints import Endpoints  # noqa: PLC0415
    from maxtune.agent.fleetfile import FleetError  # noqa: PLC0415
    from maxtune.agent.metrics import AgentMetrics  # noqa: PLC0415
    from maxtune.agent.publish import FileSink, PublishError, Sink  # noqa: PLC0415

    try:
        backend = backends.select(simulate=args.simulate, node_name=args.node_name)
    except (FleetError, ValueError) as exc:
        return _fail("agent", str(exc))
    sink: Sink
    try:
        sink = (
            FileSink(args.profile_file)
            if args.profile_file
            else _kube_sink(args.kubeconfig, args.lease_namespace, args.interval)
        )
    except PublishError as exc:
        return _fail("agent", str(exc))
    prover, cache_groups = _cache_prover(args, backend)
    metrics = AgentMetrics(args.node_name)
    agent = Agent(
        node=args.node_name,
        backend=backend,
        sink=sink,
        level=args.level,
        interval_s=args.interval,
        metrics=metrics,
        measurement_log=args.measurement_log,
        mig_strategy=strategy,
        cache_prover=prover,
        cache_groups=cache_groups,
    )
    log = logging.getLogger("maxtune.agent")
    log.info(
        "agent for node %s: backend %s, level %s, MIG strategy %s, publishing to %s",
        args.node_name,
        backend.source,
        args.level,
        backend.mig_strategy() or strategy,
        sink.description,
    )
    try:
        if args.once:
            agent.recover()
            agent.tick(block=True)
            return 0 if agent.published is not None else 1
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            server = Endpoints(
                args.metrics_host, args.metrics_port, metrics=metrics, readiness=agent.readiness
            ).start()
        except OSError as exc:
            return _fail(
                "agent", f"cannot listen on {args.metrics_host}:{args.metrics_port}: {exc}"
            )
        log.info("serving /metrics /healthz /readyz on %s:%d", args.metrics_host, server.port)
        try:
            agent.run(stop)
        finally:
            server.stop()
        return 0
    finally:
        backend.close()


def _cache_prover(args: argparse.Namespace, backend: Any) -> tuple[Any, list[str] | None]:
    """What proves the compile caches, and which groups it proves: the fleet file's results
    in a simulation (no Redis is contacted), else the real proof on this node's GPU for
    every configured group. (None, None) where there is nothing to prove."""
    from maxtune.agent import cacheproof  # noqa: PLC0415
    from maxtune.agent.backends import SimulationBackend  # noqa: PLC0415

    given = args.compile_cache_url or os.environ.get(cacheproof.ENV, "")
    caches = cacheproof.parse(given)
    if isinstance(backend, SimulationBackend):
        groups = backend.simulated_cache_groups()
        return (backend.cache_proofs, groups) if groups else (None, None)
    if not caches:
        return None, None
    log = logging.getLogger("maxtune.agent")
    for cache in caches:
        if cache.problem is not None:
            log.error("compile cache %s: %s (reported as BadUrl)", cache.group, cache.problem)
    log.info(
        "compile caches to prove: %s", ", ".join(f"{c.group} ({c.redacted()})" for c in caches)
    )
    mode = args.compile_cache_mode

    def prove(inventory: Any) -> Any:
        return cacheproof.prove_node(inventory, backend.targets(inventory), caches, mode=mode)

    return prove, [c.group for c in caches]


def _kube_sink(kubeconfig: str | None, lease_namespace: str | None, interval: float) -> Any:
    from maxtune.agent.kube import KubeSink  # noqa: PLC0415 - runs without a cluster skip it

    return KubeSink.from_kubeconfig(
        kubeconfig, lease_namespace=lease_namespace, lease_seconds=int(max(60, 3 * interval))
    )
