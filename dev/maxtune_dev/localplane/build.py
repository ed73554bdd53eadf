"""Build the control-plane binaries from pinned Go modules, once, into a version-keyed cache.

Each component gets a throwaway Go module under `<cache>/build/<name>-<version>/`
whose go.mod requires the pinned module (and, for Kubernetes, maps its staging
modules to their published tags); `go get` resolves it and one `go build`
links every binary of the component. Binaries land in
`<cache>/bin/<name>-<version>/` next to a `.complete` stamp, so a later run
finds them and does nothing. GOMODCACHE and GOCACHE stay at Go's defaults
(unless the caller sets them), so a fresh checkout on a machine that built
before only relinks.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from maxtune_dev.localplane import paths
from maxtune_dev.localplane.versions import (
    COMPONENTS,
    ETCD,
    HELM,
    KUBERNETES,
    KWOK,
    Component,
    etcd_ldflags,
    helm_ldflags,
    kube_ldflags,
    render_gomod,
    staging_replaces,
)

Progress = Callable[[str], None]
FAILED_MARKER_TTL_S = 24 * 3600


class BuildError(RuntimeError):
    """A build step failed; the message names the step and the log that tells why."""

    def __init__(self, step: str, log: Path | None, detail: str) -> None:
        self.step = step
        self.log = log
        where = f" (log: {log})" if log else ""
        super().__init__(f"localplane build failed at step '{step}'{where}: {detail}")


@dataclass(frozen=True)
class Binaries:
    """Paths of every binary the plane and the chart tests need, with the versions built."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    helm: Path
    versions: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Path]:
        return {
            "etcd": self.etcd,
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kwok": self.kwok,
            "helm": self.helm,
        }


def _stderr_progress(line: str) -> None:
    print(f"[localplane] {line}", file=sys.stderr, flush=True)


def bin_dir(component: Component, version: str, cache: Path | None = None) -> Path:
    return (cache or paths.cache_dir()) / "bin" / f"{component.name}-{version}"


def is_built(component: Component, version: str, cache: Path | None = None) -> bool:
    folder = bin_dir(component, version, cache)
    if not (folder / ".complete").is_file():
        return False
    return all(os.access(folder / binary, os.X_OK) for binary in component.binaries)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise builds of one component across processes (two `make test` at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Builder:
    """Runs the steps of one component build, logging every command to one file."""

    def __init__(self, component: Component, version: str, cache: Path, progress: Progress):
        self.component = component
        self.version = version
        self.cache = cache
        self.progress = progress
        self.label = f"{component.name} {version}"
        self.work = cache / "build" / f"{component.name}-{version}"
        self.log = cache / "logs" / f"{component.name}-{version}.log"

    def run(self, step: str, args: Sequence[str], *, capture: bool = False) -> str:
        started = time.monotonic()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            log.write(f"\n$ {' '.join(args)}   # step: {step}, cwd: {self.work}\n")
            log.flush()
            try:
                done = subprocess.run(
                    list(args),
                    cwd=self.work,
                    stdout=subprocess.PIPE if capture else log,
                    stderr=log,
                    text=True,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise BuildError(f"{self.label}: {step}", self.log, str(exc)) from exc
            elapsed = time.monotonic() - started
            log.write(f"# exit {done.returncode} after {elapsed:.1f}s\n")
        if done.returncode != 0:
            raise BuildError(
                f"{self.label}: {step}",
                self.log,
                f"exit code {done.returncode}; last lines:\n{tail(self.log, 15)}",
            )
        self.progress(f"{self.label}: {step} ({elapsed:.1f}s)")
        return done.stdout if capture else ""

    def build(self, go: str) -> Path:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text(f"# build of {self.label} at {_now()}\n")
        module = f"maxtune.local/build/{self.component.name}"
        (self.work / "go.mod").write_text(render_gomod(module, {}))
        extra: list[str] = []
        if self.component.name == KUBERNETES.name:
            info = json.loads(
                self.run(
                    "download module",
                    [go, "mod", "download", "-json", f"{KUBERNETES.module}@{self.version}"],
                    capture=True,
                )
            )
            gomod = Path(info["GoMod"]).read_text()
            replaces = staging_replaces(gomod, self.version)
            (self.work / "go.mod").write_text(render_gomod(module, {}, replaces))
            extra = kube_ldflags(self.version, _now())
        elif self.component.name == ETCD.name:
            extra = etcd_ldflags(self.version)
        targets = [f"{package}@{self.version}" for package, _ in self.component.packages]
        self.run("resolve (go get)", [go, "get", *targets])
        if self.component.name == HELM.name:
            client_go = self.run(
                "read client-go version",
                [go, "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"],
                capture=True,
            ).strip()
            extra = helm_ldflags(self.version, client_go)
        out = self.work / "out"
        packages = [package for package, _ in self.component.packages]
        output = str(out / self.component.binaries[0]) if len(packages) == 1 else f"{out}/"
        ldflags = " ".join(["-s", "-w", *extra])
        self.run(
            "compile and link (go build)",
            [
                go,
                "build",
                "-buildvcs=false",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                output,
                *packages,
            ],
        )
        return self._install(out, go)

    def _install(self, out: Path, go: str) -> Path:
        final = bin_dir(self.component, self.version, self.cache)
        staging = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for binary in self.component.binaries:
            shutil.move(str(out / binary), staging / binary)
        stamp = {
            "component": self.component.name,
            "module": self.component.module,
            "version": self.version,
            "go": _go_version(go),
            "built_at": _now(),
        }
        (staging / ".complete").write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        shutil.rmtree(self.work, ignore_errors=True)
        return final


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _go_version(go: str) -> str:
    done = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def tail(path: Path, lines: int) -> str:
    """Last lines of a text file (logs can be large; read only the end)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "find the Go toolchain",
            None,
            "`go` is not on PATH; install Go 1.26 or newer (the control plane is built from "
            "Go modules) and run `python -m maxtune_dev.localplane build` again",
        )
    return go


def _failed_marker(component: Component, version: str, cache: Path) -> Path:
    return cache / "bin" / f"{component.name}-{version}.failed"


def _recently_failed(marker: Path) -> bool:
    if os.environ.get("MAXTUNE_RETRY_FAILED") == "1" or not marker.is_file():
        return False
    return time.time() - marker.stat().st_mtime < FAILED_MARKER_TTL_S


def ensure_component(
    component: Component, *, cache: Path | None = None, progress: Progress | None = None
) -> tuple[str, Path]:
    """Return (version, folder) of a built component, building the first candidate that works.

    A candidate that failed to build is marked and skipped for a day, so a
    pin that cannot build does not cost every run a failed build before the
    fallback; MAXTUNE_RETRY_FAILED=1 retries it at once.
    """
    cache = cache or paths.cache_dir()
    report = progress or _stderr_progress
    for version in component.candidates:
        if is_built(component, version, cache):
            return version, bin_dir(component, version, cache)
    errors: list[str] = []
    with _file_lock(cache / "bin" / f".{component.name}.lock"):
        for version in component.candidates:
            if is_built(component, version, cache):  # built by another process meanwhile
                return version, bin_dir(component, version, cache)
            marker = _failed_marker(component, version, cache)
            if _recently_failed(marker):
                errors.append(f"{version}: skipped, failed recently ({marker.read_text().strip()})")
                continue
            go = find_go()
            report(f"{component.name} {version}: building from {component.module} (first time)")
            started = time.monotonic()
            try:
                folder = _Builder(component, version, cache, report).build(go)
            except BuildError as exc:
                marker.write_text(f"step '{exc.step}', log {exc.log}\n")
                errors.append(str(exc))
                report(f"{component.name} {version}: FAILED, trying the next candidate ({exc})")
                continue
            marker.unlink(missing_ok=True)
            report(f"{component.name} {version}: built in {time.monotonic() - started:.1f}s")
            return version, folder
    raise BuildError(
        f"{component.name}: every candidate",
        cache / "logs",
        "no candidate version built:\n  " + "\n  ".join(errors),
    )


def _collect(cache: Path | None, report: Progress) -> Binaries:
    found: dict[str, tuple[str, Path]] = {}
    for component in COMPONENTS:
        found[component.name] = ensure_component(component, cache=cache, progress=report)
    kube = found[KUBERNETES.name][1]
    return Binaries(
        etcd=found[ETCD.name][1] / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        kwok=found[KWOK.name][1] / "kwok",
        helm=found[HELM.name][1] / "helm",
        versions={name: version for name, (version, _) in found.items()},
    )


def ensure_binaries(*, cache: Path | None = None, progress: Progress | None = None) -> Binaries:
    """Build whatever is missing (idempotent, safe to run concurrently) and return the paths."""
    started = time.monotonic()
    report = progress or _stderr_progress
    found = _collect(cache, report)
    summary = ", ".join(f"{name} {version}" for name, version in found.versions.items())
    report(f"binaries ready in {time.monotonic() - started:.1f}s: {summary}")
    return found


def binaries(*, cache: Path | None = None) -> Binaries:
    """The cached binaries (building any that are missing, with progress on stderr).

    Silent when everything is cached, so tests and the demo can call it freely;
    helm is here for the chart tests and the end-to-end test.
    """
    return _collect(cache, _stderr_progress)
