"""`maxtune operator`: the webhook, the watches and the labeller, in one process.

Every replica follows the cluster (one informer per kind, each on its own
thread), keeps its own FleetState and serves the webhook from it; only the
Lease holder runs the labeller. Start-up order: health and metrics first (the
kubelet's probes can see us), then the webhook (it fails open until every
kind's first list is in), then the informers, then leadership. Shutdown: not
ready at once, keep answering admissions for a short grace (endpoints take a
moment to drop us), stop the labeller, give the Lease back, stop the
informers, close the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from maxtune.cli.version import VERSION
from maxtune.kube import Kube, load_configuration
from maxtune.operator import looplag, server
from maxtune.operator.cachedir import DirectoryFile
from maxtune.operator.events import PROFILE_PAGE_SIZE, Kind, sources
from maxtune.operator.fleet import FleetState
from maxtune.operator.informer import Informer
from maxtune.operator.labeller import Labeller
from maxtune.operator.leader import LeaderElector
from maxtune.operator.metrics import Metrics
from maxtune.operator.tls import CertReloader, server_context

log = logging.getLogger(__name__)

# How long shutdown waits for its cancelled tasks (in-flight API calls run on in their
# threads; their answers are dropped): well inside the pod's 30 s termination grace.
_TASK_STOP_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    tls_cert_file: Path
    tls_key_file: Path
    identity: str
    kubeconfig: Path | None = None
    namespace: str | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 9443
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    leader_election: bool = True
    lease_name: str = "maxtune-labeller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    watch_seconds: int = 300
    orphan_grace_seconds: float = 60.0
    tls_reload_seconds: float = 10.0
    label_concurrency: int = 16  # measured: docs/benchmarks/fleet.md, decision 0004
    profile_page_size: int = PROFILE_PAGE_SIZE  # profiles per list page (events.py says why)
    shutdown_grace_seconds: float = 3.0
    compile_cache_directory: Path | None = None  # the chart's directory.json, mounted


def freeze_heap() -> None:
    """Take what start-up built out of the cyclic garbage collector's full passes.

    After the first complete list the process holds tens of thousands of
    long-lived objects per thousand nodes (the fleet's records, the views
    derived from them, modules). A full collection walks all of them while
    holding the GIL, and the allocations of profile heartbeats trigger one
    every minute or so; no admission is answered meanwhile. In-process, a
    2,000-node FleetState with aiohttp and kubernetes imported (91,504
    tracked objects, with kopf then) took 25-27 ms per full pass, and nothing measurable once
    frozen (`benchmarks.hotpath` fleet, 2026-11-25). Frozen objects are still
    freed by reference counting; only a reference cycle among them would
    never be collected, which long-lived state of this kind does not form.
    """
    gc.collect()
    gc.freeze()


def _configuration(config: OperatorConfig) -> Any:
    """The cluster's client configuration, its connection pool sized for the operator.

    Every informer holds one connection for its watch, and every label write in flight
    needs one more; urllib3 opens a connection beyond the pool's size when it must, then
    throws it away instead of keeping it alive (a new TLS handshake for the next write).
    """
    found = load_configuration(config.kubeconfig)
    wanted = len(sources(config.namespace)) + config.label_concurrency + 4
    found.connection_pool_maxsize = max(int(found.connection_pool_maxsize or 0), wanted)
    return found


class Operator:
    """The running operator; `serve()` until `stop()` (or SIGTERM in `run`)."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.fleet = FleetState()
        self.metrics = Metrics(VERSION, self.fleet)
        self.kube = Kube(_configuration(config), user_agent=f"maxtune-operator/{VERSION}")
        self.primed = False
        self.stopping = False
        self.webhook_port = 0
        self.metrics_port = 0
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._labeller_task: asyncio.Task[None] | None = None
        self._informers: list[Informer] = []
        self._synced: set[Kind] = set()
        self._all_synced = asyncio.Event()
        self._elector: LeaderElector | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._exit_code = 0
        self._runners: list[web.AppRunner] = []

    # ------------------------------------------------------------ probes

    def healthy(self) -> bool:
        return all(i.alive() for i in self._informers) or self.stopping

    def ready(self) -> bool:
        return self.primed and not self.stopping

    # ------------------------------------------------------------ leadership

    def _start_labeller(self) -> None:
        self.metrics.leader.set(1)
        if self._labeller_task is None or self._labeller_task.done():
            labeller = Labeller(
                self.fleet,
                self.kube,
                self.metrics,
                concurrency=self.config.label_concurrency,
                orphan_grace_seconds=self.config.orphan_grace_seconds,
            )
            self._labeller_task = asyncio.create_task(labeller.run(), name="labeller")

    def _stop_labeller(self) -> None:
        self.metrics.leader.set(0)
        if self._labeller_task is not None:
            self._labeller_task.cancel()

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    async def serve(self) -> int:
        """Run until stopped; the exit code is 1 when the watches died under us."""
        await self._start_servers()
        self._start_informers(asyncio.get_running_loop())
        self.started.set()
        exit_code = 1
        try:
            if await self._prime_unless_stopped():
                self._start_background()
            exit_code = await self._watch_until_stopped()
        finally:
            await self._shutdown(grace=exit_code == 0)
        return exit_code

    async def _start_servers(self) -> None:
        cfg = self.config
        tls = server_context(cfg.tls_cert_file, cfg.tls_key_file)
        reloader = CertReloader(
            tls, cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_reload_seconds, self.metrics
        )
        self._tasks.append(asyncio.create_task(reloader.run(), name="tls-reload"))
        lag = looplag.probe(self.metrics.loop_lag.observe)
        self._tasks.append(asyncio.create_task(lag, name="loop-lag"))
        if cfg.compile_cache_directory is not None:
            directory = DirectoryFile(cfg.compile_cache_directory)
            watch = self._follow_cache_directory(directory, cfg.tls_reload_seconds)
            self._tasks.append(asyncio.create_task(watch, name="cache-directory"))
        health_app = server.health_app(self.metrics, healthy=self.healthy, ready=self.ready)
        runner, self.metrics_port = await server.start(
            health_app, cfg.metrics_host, cfg.metrics_port
        )
        self._runners.append(runner)
        webhook_app = server.webhook_app(
            self.fleet,
            self.metrics,
            own_namespace=cfg.namespace,
            version=VERSION,
            ready=lambda: self.primed,
        )
        runner, self.webhook_port = await server.start(
            webhook_app, cfg.webhook_host, cfg.webhook_port, tls
        )
        self._runners.insert(0, runner)  # closed first on shutdown
        log.info(
            "maxtune %s: webhook https://%s:%d/mutate, metrics http://%s:%d/metrics",
            VERSION,
            cfg.webhook_host,
            self.webhook_port,
            cfg.metrics_host,
            self.metrics_port,
        )

    async def _follow_cache_directory(self, directory: DirectoryFile, every: float) -> None:
        """Read the mounted compile-cache directory again whenever the kubelet updates it."""
        while True:
            entries = directory.changed()
            if entries is not None:
                self.fleet.set_cache_directory(entries)
                log.info("compile cache directory: %d namespace(s)", len(entries))
            await asyncio.sleep(every)

    def _start_informers(self, loop: asyncio.AbstractEventLoop) -> None:
        def deliver(change: Callable[[FleetState], object]) -> None:
            loop.call_soon_threadsafe(change, self.fleet)

        def synced(kind: Kind) -> None:
            loop.call_soon_threadsafe(self._synced_kind, kind)

        def restarted(kind: Kind, why: str) -> None:
            self.metrics.watch_restarts.labels(kind, why).inc()

        for source in sources(
            self.config.namespace, profile_page_size=self.config.profile_page_size
        ):
            informer = Informer(
                self.kube,
                source,
                deliver,
                on_synced=synced,
                on_restart=restarted,
                watch_seconds=self.config.watch_seconds,
            )
            self._informers.append(informer)
            informer.start()

    def _synced_kind(self, kind: Kind) -> None:
        self._synced.add(kind)
        if len(self._synced) == len(self._informers):
            self._all_synced.set()

    async def _prime_unless_stopped(self) -> bool:
        primed = asyncio.create_task(self._all_synced.wait(), name="prime")
        stopped = asyncio.create_task(self._stop.wait())
        await asyncio.wait({primed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not primed.done():
            primed.cancel()
            return False
        primed.result()
        await self._warm()
        freeze_heap()
        self.primed = True
        self.metrics.ready.set(1)
        log.info(
            "cluster state loaded: %d node(s), %d profile(s), %d policy(ies)",
            len(self.fleet.nodes),
            len(self.fleet.profiles),
            len(self.fleet.policies),
        )
        return True

    async def _warm(self) -> None:
        """Compute every policy's mode tables in small steps between admissions."""
        policies = [self.fleet.cluster_policy(), *self.fleet.policies.values()]
        for policy in policies:
            done = self.fleet.warm(policy, budget=50)
            while done:
                await asyncio.sleep(0)  # let admissions in between the steps
                done = self.fleet.warm(policy, budget=50)

    async def _warm_forever(self, interval: float = 0.5) -> None:
        """New profiles and policy changes leave tables to compute; do it before a request must."""
        while True:
            await self._warm()
            await asyncio.sleep(interval)

    def _start_background(self) -> None:
        cfg = self.config
        self._tasks.append(asyncio.create_task(self._warm_forever(), name="warm"))
        if not cfg.leader_election:
            self._start_labeller()
            return
        if not cfg.namespace:
            raise SystemExit("leader election needs --namespace (or POD_NAMESPACE)")
        self._elector = LeaderElector(
            self.kube,
            namespace=cfg.namespace,
            name=cfg.lease_name,
            identity=cfg.identity,
            on_started=self._start_labeller,
            on_stopped=self._stop_labeller,
            lease_duration=cfg.lease_duration,
            renew_deadline=cfg.renew_deadline,
            retry_period=cfg.retry_period,
        )
        self._tasks.append(asyncio.create_task(self._elector.run(), name="leader-election"))

    async def _watch_until_stopped(self) -> int:
        while not self._stop.is_set():
            dead = [i.kind for i in self._informers if not i.alive()]
            if dead:
                log.error("the %s informer stopped; exiting so that the pod is restarted", dead)
                return 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stop.wait()
        return self._exit_code

    async def _shutdown(self, *, grace: bool) -> None:
        self.stopping = True
        self.metrics.ready.set(0)
        if grace and self.config.shutdown_grace_seconds > 0:
            await asyncio.sleep(self.config.shutdown_grace_seconds)
        for task in self._tasks:
            task.cancel()
        self._stop_labeller()
        pending = {t for t in (*self._tasks, self._labeller_task) if t is not None}
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=_TASK_STOP_SECONDS)
            if stuck:  # a bug; name it, and give the Lease back all the same
                log.error("shutdown: %s did not end", sorted(t.get_name() for t in stuck))
        if self._elector is not None:
            await self._elector.release()
        for informer in self._informers:
            informer.stop()
        self.kube.close()  # ends the informers' blocked watch reads
        for informer in self._informers:
            await asyncio.to_thread(informer.join, 5.0)
        for runner in self._runners:
            await runner.cleanup()


async def _run(config: OperatorConfig) -> int:
    op = Operator(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, op.stop)
    return await op.serve()


def run(config: OperatorConfig) -> int:
    # The webhook's loop shares the GIL with the informer threads and the API-call
    # threads: a 1 ms switch interval bounds how long an admission waits behind their
    # Python code (decoding and validating pages of profiles; see informer.py).
    sys.setswitchinterval(0.001)
    return asyncio.run(_run(config))
