"""`make demo` (`python -m maxtune_dev.demo run`): the whole stack here, shown, then taken down.

Without `--kubeconfig` it starts a local control plane (real etcd, kube-apiserver, scheduler,
controller manager, and kwok for fake nodes) and removes it at the end. With `--kubeconfig` it
uses that cluster instead, which must run on this machine (the operator and agents run here, and
the webhook URL is 127.0.0.1): it still adds the fleet as fake kwok nodes with SIMULATED GPUs,
and removes them, the release and everything else it added when it stops.

Interactive (stdin is a terminal, no `--no-wait`): everything stays up until Enter or Ctrl-C, and
the KUBECONFIG line is printed. Otherwise it tears down at the end and exits 0 on success.
Registration imports nothing heavy; the handler imports the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from maxtune_dev.demo.cluster import Cluster
    from maxtune_dev.demo.stack import Stack

DEFAULT_FLEET = Path("examples") / "fleets" / "demo.yaml"


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the whole stack locally on a simulated GPU fleet and show what it does",
        description="Start a local control plane, add fake GPU nodes (SIMULATED GPUs), helm "
        "install the chart, run the operator and agents as local processes, Prometheus "
        "scraping them; show the labelled fleet, a mutated pod and the metrics.",
    )
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this cluster instead of starting one (its API server must be on this "
        "machine; fake nodes are still added, and removed at the end)",
    )
    p.add_argument("--fleet", type=Path, help=f"the simulated fleet (default: {DEFAULT_FLEET})")
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="tear down at the end instead of waiting for Enter (also when stdin is no TTY)",
    )
    p.set_defaults(handler=run_demo)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the stack and the plane are taken down either way."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        print(text, flush=True)

    def step(self, title: str) -> None:
        print(f"\n==> {title}", flush=True)

    def since(self, mark: float) -> str:
        return f"{time.monotonic() - mark:.1f}s"


def run_demo(args: argparse.Namespace) -> int:
    from maxtune_dev.demo.cluster import ClusterError  # noqa: PLC0415
    from maxtune_dev.localplane import paths  # noqa: PLC0415

    fleet = args.fleet or paths.repo_root() / DEFAULT_FLEET
    if not fleet.is_file():
        print(f"maxtune demo: fleet file {fleet} not found", file=sys.stderr)
        return 2
    interactive = not args.no_wait and sys.stdin.isatty()
    root = paths.run_dir() / "demo"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    say = _Clock()
    try:
        with _sigterm_as_interrupt():
            _run(args, fleet, folder, say, interactive=interactive)
    except KeyboardInterrupt:
        shutil.rmtree(folder, ignore_errors=True)
        print("\nmaxtune demo: interrupted; stopped everything it started")
        return 130
    except ClusterError as exc:  # bad input: nothing was started
        shutil.rmtree(folder, ignore_errors=True)
        print(f"maxtune demo: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"\nmaxtune demo: FAILED after {say.since(say.started)}: {exc}", file=sys.stderr)
        print(f"maxtune demo: logs of every process are kept in {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    print(f"\nmaxtune demo: OK in {say.since(say.started)} (everything it started is stopped)")
    return 0


def _run(
    args: argparse.Namespace, fleet: Path, folder: Path, say: _Clock, *, interactive: bool
) -> None:
    from maxtune_dev.demo.cluster import Cluster  # noqa: PLC0415
    from maxtune_dev.localplane import LocalPlane  # noqa: PLC0415

    plane: LocalPlane | None

    say("maxtune demo: the chart, the operator and one agent per node on a SIMULATED GPU fleet")
    say(f"(GPUs from {fleet}; every server listens on 127.0.0.1 only)")
    with contextlib.ExitStack() as cleanup:
        if args.kubeconfig is None:
            say.step(
                "Local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok"
            )
            mark = time.monotonic()
            plane = cleanup.enter_context(LocalPlane())
            say(f"up in {say.since(mark)}: {plane.server}")
            cluster = Cluster.of_plane(plane)
        else:
            cluster = Cluster.of_kubeconfig(args.kubeconfig, folder)
            say.step(f"Using the cluster of {args.kubeconfig} ({cluster.server})")
            say(
                "The demo adds its fleet there as fake kwok nodes (their GPUs are SIMULATED), "
                "installs the chart, runs the operator and agents here, and removes all of it "
                "when it stops. A kwok controller must manage kwok.x-k8s.io/node=fake nodes."
            )
            plane = None
        try:
            _with_stack(cluster, fleet, folder, say, interactive=interactive)
        except Exception:
            if plane is not None:  # the plane's own folder goes with it: keep its logs
                shutil.copytree(plane.state_dir / "logs", folder / "plane-logs", dirs_exist_ok=True)
            raise


def _with_stack(
    cluster: Cluster, fleet: Path, folder: Path, say: _Clock, *, interactive: bool
) -> None:
    from maxtune_dev.demo import show  # noqa: PLC0415
    from maxtune_dev.demo.promfetch import version_of  # noqa: PLC0415
    from maxtune_dev.demo.stack import Stack, StackOptions  # noqa: PLC0415

    stack = Stack(cluster, StackOptions(fleet_file=fleet), folder, progress=say)
    say.step(
        f"Fleet: {len(stack.gpu_nodes)} GPU nodes and {len(stack.nodes) - len(stack.gpu_nodes)} "
        f"CPU node(s); then `{stack.release.command()}`, with values:"
    )
    for key, value in _flat(stack.release.values):
        say(f"  {key}={value}")
    say("The pods have no container runtime: each operator replica and each node's agent runs")
    say("here as the process its container would be, with a token bound to its pod.")
    mark = time.monotonic()
    with stack:
        prometheus = stack.prometheus
        assert prometheus is not None
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items())
        say(f"up in {say.since(mark)} ({steps})")
        say(f"Prometheus: {version_of(prometheus.binary)} on {prometheus.url}")

        say.step("maxtune status")
        say(stack.status(as_json=False).rstrip())

        say.step("An opted-in training pod goes through the admission webhook")
        try:
            show.show_pods(stack, say)
            say.step("Prometheus, scraping the operator replicas and every agent")
            show.show_queries(prometheus, say)
            if interactive:
                _wait_for_person(cluster, stack, say)
        finally:
            show.remove_team_namespace(stack)
        say.step("Stopping: operator and agents, helm uninstall, the cleanup hook, fake nodes")
        mark = time.monotonic()
    say(f"stopped in {say.since(mark)}")


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            found += _flat(value, f"{prefix}{key}.")
        else:
            found.append((f"{prefix}{key}", value))
    return found


def _wait_for_person(cluster: Cluster, stack: Stack, say: _Clock) -> None:
    from maxtune_dev.localplane import binaries  # noqa: PLC0415

    say.step("Everything keeps running until you press Enter (or Ctrl-C). In another shell:")
    say(f"  export KUBECONFIG={cluster.kubeconfig}")
    say(f"  {binaries().helm} list -A")
    say(f"  {Path(sys.executable).with_name('maxtune')} status")
    if stack.prometheus is not None:
        say(
            f"  Prometheus: {stack.prometheus.url}/graph"
            "  (try: maxtune_gpu_streaming_multiprocessors)"
        )
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()
