"""Debian's real redis-server on 127.0.0.1, for the compile-cache tests, the demo and benchmarks.

`ensure_redis()` fetches Debian's redis-server (bookworm: 7.0) into `.cache/bin/redis-<version>/`
the way Prometheus is fetched (debfetch: no root, nothing installed); its two libraries that a
plain Debian lacks (jemalloc, lzf) are unpacked beside it and found through LD_LIBRARY_PATH.
`MAXTUNE_REDIS_SERVER` names another redis-server (7.x) to use instead.

`RedisServer` runs one with a given redis.conf and ACL file (the chart's own, in the isolation
tests), always bound to 127.0.0.1 on a free port, with its state in a folder of its own, and
stops it with everything it started. Admin queries go through Debian's redis-cli from the same
package, so the harness needs no Python client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from maxtune_dev.localplane import debfetch
from maxtune_dev.localplane.process import Proc, free_port, spawn, stop

REDIS = debfetch.DebianTool(
    name="redis",
    package="redis-server",
    # redis-server is a symlink to redis-check-rdb (redis-tools): the binary picks its role from
    # the name it is started by, so the link is what runs.
    binary="usr/bin/redis-server",
    env="MAXTUNE_REDIS_SERVER",
    known_version="5:7.0.15-1~deb12u10",
    extra_packages=("redis-tools", "libjemalloc2", "liblzf1"),
    hint="/path/to/redis-server (7.x)",
)
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
# Set on the command line for every local run; removed from the file first, since redis acts on
# some of them while it reads the file (`dir` changes folder at once, before any override).
LOCAL_DIRECTIVES = ("port", "bind", "dir", "aclfile", "logfile", "daemonize")


class RedisError(RuntimeError):
    """redis-server did not start, or a redis-cli call failed; the message has its log."""


def ensure_redis(progress: debfetch.Progress = debfetch.quiet) -> Path:
    """Debian's redis-server: from MAXTUNE_REDIS_SERVER, the cache, or fetched now."""
    return debfetch.ensure(REDIS, progress)


def library_dirs(binary: Path) -> list[Path]:
    """Folders of shared libraries unpacked beside the binary (none for a system binary):
    Debian puts them under usr/lib/<triplet> or, for some packages, lib/<triplet>."""
    root = binary.parent.parent.parent  # <root>/usr/bin/redis-server
    if not (root / debfetch.COMPLETE).is_file():  # not one of ours: a system binary
        return []
    found = set()
    for lib in (root / "usr" / "lib", root / "lib"):
        found |= {p.parent for p in lib.glob("*/*.so*")} | {p.parent for p in lib.glob("*.so*")}
    return sorted(found)


def tool_env(binary: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which the unpacked binaries find their libraries."""
    env = dict(os.environ if base is None else base)
    dirs = [str(d) for d in library_dirs(binary)]
    if dirs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*dirs, *filter(None, [env.get("LD_LIBRARY_PATH", "")])]
        )
    return env


def version_of(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "--version"],
        env=tool_env(binary),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (done.stdout or done.stderr).strip() or "unknown"


def url(
    user: str,
    password: str,
    port: int,
    host: str = HOST,
    query: Mapping[str, float | str] | None = None,
) -> str:
    """redis://user:password@host:port[?query] with both parts quoted as redis-py unquotes them."""
    auth = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
    tail = f"?{urllib.parse.urlencode(query)}" if query else ""
    return f"redis://{auth}@{host}:{port}{tail}"


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(out)


def ping_reply(port: int, host: str = HOST, timeout_s: float = 2.0) -> str:
    """The first line a server answers to an unauthenticated PING (+PONG, -NOAUTH, -LOADING)."""
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(_resp("PING"))
        return sock.recv(256).split(b"\r\n", 1)[0].decode("utf-8", "replace")


class RedisServer:
    """One redis-server on 127.0.0.1 (a context manager): `config` is a redis.conf, `acl` an ACL
    file. Port, bind address, folder, log and the ACL file's path (LOCAL_DIRECTIVES) are taken
    out of the file and set on the command line, so a config written for a pod runs here with
    everything else unchanged."""

    def __init__(
        self,
        config: str,
        acl: str | None = None,
        *,
        binary: Path | None = None,
        workdir: Path | None = None,
        port: int | None = None,
        name: str = "redis",
    ) -> None:
        self.config = config
        self.acl = acl
        self.binary = binary if binary is not None else ensure_redis()
        self._own_dir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"maxtune-{name}-")) if workdir is None else workdir
        )
        self.port = port if port is not None else free_port()
        self.name = name
        self.proc: Proc | None = None

    @property
    def cli_binary(self) -> Path:
        return self.binary.with_name("redis-cli")

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def argv(self) -> list[str]:
        conf = self.workdir / "redis.conf"
        args = [str(self.binary), str(conf), "--port", str(self.port), "--bind", HOST]
        args += ["--dir", str(self.workdir / "data"), "--daemonize", "no", "--logfile", ""]
        if self.acl is not None:
            args += ["--aclfile", str(self.workdir / "users.acl")]
        return args

    def start(self) -> RedisServer:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "redis.conf").write_text(local_config(self.config))
        if self.acl is not None:
            acl = self.workdir / "users.acl"
            acl.write_text(self.acl)
            acl.chmod(0o600)
        self.proc = spawn(self.name, self.argv(), self.log, env=tool_env(self.binary))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise RedisError(f"redis-server exited at start:\n{self.proc.log_tail()}")
            try:
                reply = ping_reply(self.port)
            except OSError:
                reply = ""
            if reply.startswith(("+PONG", "-NOAUTH")):
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisError(f"redis-server not ready after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.proc.log_tail() if self.proc is not None else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop([self.proc])
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, user: str, password: str, **query: float | str) -> str:
        return url(user, password, self.port, query=query)

    def cli(
        self, *args: str, user: str | None = None, password: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """redis-cli against this server, as `user` (REDISCLI_AUTH keeps the password out of
        argv); the reply's text, errors included, is in stdout."""
        argv = [str(self.cli_binary), "-h", HOST, "-p", str(self.port)]
        env = tool_env(self.binary)
        env.pop("REDISCLI_AUTH", None)
        if user is not None:
            argv += ["--user", user]
        if password is not None:
            env["REDISCLI_AUTH"] = password
        return subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    def info(self, user: str, password: str, section: str = "everything") -> dict[str, str]:
        """INFO as a dict (needs a user allowed to run INFO)."""
        done = self.cli("INFO", section, user=user, password=password)
        if done.returncode != 0 or done.stdout.startswith(("NOPERM", "NOAUTH", "WRONGPASS")):
            raise RedisError(f"INFO as {user}: {done.stdout.strip()} {done.stderr.strip()}")
        return parse_info(done.stdout)


def local_config(config: str) -> str:
    """The config without the directives a local run sets on the command line."""
    kept = [
        line
        for line in config.splitlines()
        if not (line.split() and line.split()[0].lower() in LOCAL_DIRECTIVES)
    ]
    return "\n".join(kept) + "\n"


def parse_info(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            found[key.strip()] = value.strip()
    return found


# The rights of a cache user: torch's Redis remote cache runs GET and SET on keys "pt2:..."
# (torch/_inductor/remote_cache.py). The chart's make-acl.sh grants the same (a test compares).
TORCH_CACHE_RULES = "resetkeys ~pt2:* resetchannels -@all +get +set"

# A cache server as the tests and the benchmarks run it: no persistence, a memory cap with LRU
# eviction (a cache: losing an entry costs a recompile, never correctness).
CACHE_CONFIG = """\
save ""
appendonly no
protected-mode yes
maxmemory {maxmemory}
maxmemory-policy allkeys-lru
"""


def cache_config(maxmemory: str = "256mb") -> str:
    return CACHE_CONFIG.format(maxmemory=maxmemory)


def acl_file(users: Sequence[tuple[str, str, str]]) -> str:
    """An ACL file: `default` off, then each (name, password, rules) with its password in
    clear (`>`; the chart's file holds SHA-256 hashes instead)."""
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    lines += [f"user {name} on >{password} {rules}" for name, password, rules in users]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def hung_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a Redis that hangs
    (stopped by a debugger, swapped out, a half-open network path). Yields its port."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, name="hung-redis", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
