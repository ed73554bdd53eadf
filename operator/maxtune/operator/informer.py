"""List, then watch: one informer per kind, as client-go's reflector does it.

Each informer runs on a thread of its own with the shared blocking client
(maxtune.kube): it lists its kind in pages, hands every page to FleetState,
prunes what the list no longer has, reports itself synced, then watches from
the list's resourceVersion with bookmarks. A stream the server ends is resumed
from the last resourceVersion seen; 410 Gone (history compacted) relists. A
kind whose CRD is not installed counts as empty and is listed again until it
appears. Failures back off (maxtune.kube.Backoff); nothing is lost, because a
resumed watch replays every change after its resourceVersion, deletions too.

Why threads, not the event loop: decoding and validating a page of 500
profiles takes tens of milliseconds of CPU. On a thread it can be preempted
between bytecodes (the runtime sets a 1 ms switch interval), so an admission
waits at most about that long; on the loop it would wait for the whole page.
Changes reach FleetState through `deliver`, which posts them to the loop that
owns it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from maxtune.kube import Kube, KubeError
from maxtune.operator.events import Change, Kind, Source, event_change, item
from maxtune.operator.fleet import FleetState
from maxtune.retry import Backoff

log = logging.getLogger(__name__)

Deliver = Callable[[Change], None]
CRD_RETRY_SECONDS: Final = 15.0


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Informer:
    def __init__(
        self,
        kube: Kube,
        source: Source,
        deliver: Deliver,
        *,
        on_synced: Callable[[Kind], None] = lambda kind: None,
        on_restart: Callable[[Kind, str], None] = lambda kind, why: None,
        watch_seconds: int = 300,
    ) -> None:
        self.kube = kube
        self.source = source
        self.deliver = deliver
        self.on_synced = on_synced
        self.on_restart = on_restart
        self.watch_seconds = watch_seconds
        self.synced = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"informer-{source.kind}", daemon=True
        )

    @property
    def kind(self) -> Kind:
        return self.source.kind

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end; a blocked watch read ends with the client's close()."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ------------------------------------------------------------ the loop

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # a bug: the runtime sees the dead thread and exits
            self.error = exc
            log.exception("the %s informer stopped with an error", self.kind)

    def _run(self) -> None:
        backoff = Backoff(base_s=0.5, cap_s=30.0)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self.list_once()
                version = self._watch(version)
                backoff.reset()
            except Gone:  # also a list whose continue token expired (410 on a page)
                self.on_restart(self.kind, "gone")
                log.info("%s watch expired (410 Gone): listing again", self.kind)
                version = ""
            except KubeError as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    self.on_restart(self.kind, "gone")
                    version = ""
                    continue
                if exc.status == 404 and self.source.optional:
                    self._absent()
                    version = ""
                    self._stop.wait(CRD_RETRY_SECONDS)
                    continue
                self.on_restart(self.kind, "error")
                delay = backoff.next_delay()
                log.warning("%s informer: %s; retrying in %.1fs", self.kind, exc, delay)
                self._stop.wait(delay)

    def list_once(self) -> str:
        """One complete list, delivered page by page; returns its resourceVersion."""
        names: set[str] = set()
        version = ""
        pages = self.kube.list_pages(
            self.source.path, page_size=self.source.page_size, query=self.source.query
        )
        for page, page_version in pages:
            version = page_version
            items = [i for i in (item(self.kind, body) for body in page) if i is not None]
            names.update(i.name for i in items)
            self.deliver(_apply_all([i.apply for i in items]))
            if self._stop.is_set():
                return ""
        kind = self.kind
        self.deliver(lambda fleet: _pruned(fleet, kind, names))
        self._synced()
        return version

    def _absent(self) -> None:
        """The kind's CRD is not installed: none of them exist, and the operator is not
        blocked on it (it is listed again until it appears)."""
        if not self.synced:
            log.warning("the CRD for %ss is not installed: none of them yet", self.kind)
        kind = self.kind
        self.deliver(lambda fleet: _pruned(fleet, kind, set()))
        self._synced()

    def _synced(self) -> None:
        if not self.synced:
            self.synced = True
            self.on_synced(self.kind)

    def _watch(self, version: str) -> str:
        """Follow changes after `version` until the server ends the stream; the last version."""
        events = self.kube.watch(
            self.source.path,
            version,
            timeout_seconds=self.watch_seconds,
            query=self.source.query,
        )
        for event in events:
            if self._stop.is_set():
                break
            if event.type == "ERROR":
                code = event.object.get("code")
                if code == 410:
                    raise Gone()
                raise KubeError(
                    int(code) if isinstance(code, int) else 0,
                    str(event.object.get("reason") or "WatchError"),
                    str(event.object.get("message") or ""),
                )
            if event.type != "BOOKMARK":
                change = event_change(self.kind, event.type, event.object)
                if change is not None:
                    self.deliver(change)
            version = event.resource_version or version
        return version


def _apply_all(changes: list[Change]) -> Change:
    """One delivery for a whole page: one wake-up of the loop instead of 500."""

    def apply(fleet: FleetState) -> None:
        for change in changes:
            change(fleet)

    return apply


def _pruned(fleet: FleetState, kind: Kind, names: set[str]) -> None:
    gone = fleet.prune(kind, names)
    if gone:
        log.info("relist of %ss dropped %d object(s) deleted meanwhile", kind, len(gone))


def list_into(kube: Kube, fleet: FleetState, sources: tuple[Source, ...]) -> None:
    """Every kind listed once into `fleet`, on this thread (the CLI's one-shot view)."""
    for source in sources:

        def apply(change: Change) -> None:
            change(fleet)

        informer = Informer(kube, source, apply)
        try:
            informer.list_once()
        except KubeError as exc:
            if not (exc.status == 404 and source.optional):
                raise
