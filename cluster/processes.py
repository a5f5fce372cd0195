"""Small process and network helpers shared by the local stack and the test fixtures.

Processes are always identified by PID plus start time, so a recycled PID is never mistaken
for one of ours, and they are only ever stopped by that identity (never by name).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil


def started(proc: psutil.Process) -> float:
    """When `proc` started, in seconds since boot on Linux: wall-clock creation times move
    whenever the clock is stepped or slewed (psutil adds the boot time, which the kernel
    recomputes from the clock), and a moved time would make a live server look gone."""
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:  # no procfs (macOS): the wall-clock time is all there is
        return proc.create_time()
    fields = stat[stat.rindex(b")") + 2 :].split()  # the name, in (), may hold spaces
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks


@dataclass(frozen=True)
class ProcessRef:
    """A process we started: its PID and its start time (guards against PID reuse)."""

    pid: int
    started: float

    @classmethod
    def of(cls, proc: int | psutil.Process) -> ProcessRef:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return cls(proc.pid, started(proc))

    def process(self) -> psutil.Process | None:
        """The live process, or None if it has exited (or the PID now belongs to another)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(started(proc) - self.started) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, data: dict) -> ProcessRef:
        if "started" not in data:  # recorded by an older version, as a wall-clock time
            return cls(int(data["pid"]), float(data["create_time"]) - psutil.boot_time())
        return cls(int(data["pid"]), float(data["started"]))


def terminate(refs: Iterable[ProcessRef], timeout: float = 15.0, sig=signal.SIGTERM) -> None:
    """Send `sig` to each live process, wait up to `timeout`, then SIGKILL the stragglers."""
    procs = [p for p in (r.process() for r in refs) if p is not None]
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def _private_temp(path: Path, text: str) -> Path:
    """`text` in a new owner-only (0600) file beside `path`, in an owner-only folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)  # other users of the machine must not read the stack's secrets
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return tmp


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by its owner only; atomically, so a reader sees
    the old content or the new, never half of it."""
    path = Path(path)
    os.replace(_private_temp(path, text), path)


def local_secret(path: Path) -> str:
    """The secret kept in `path`, generated (256 random bits, hex) the first time it is asked
    for. Created with link(), which fails when the file exists: two processes asking at once
    end up with the same secret."""
    path = Path(path)
    if not path.exists():
        tmp = _private_temp(path, secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def reap_children() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


# Ports picked for servers we start come from a band the OS never hands out by itself: below
# its ephemeral range (where every bind to port 0 and every outgoing connection lands) and
# above Ray's worker ports (10002-19999 by default); Serve's direct-ingress ports start at
# 30000. A port checked free here cannot then be taken by some process's random bind before
# our server binds it.
PICKED_PORTS = range(20000, 30000)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host`, from ``PICKED_PORTS``."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports from ``PICKED_PORTS`` (all held open together while
    picking, so no repeats)."""
    rng = random.SystemRandom()
    socks: list[socket.socket] = []
    try:
        for _ in range(count * 200):
            if len(socks) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, rng.choice(PICKED_PORTS)))
            except OSError:  # taken
                sock.close()
                continue
            socks.append(sock)
        if len(socks) < count:
            raise OSError(f"no {count} free ports in {PICKED_PORTS} on {host}")
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback URL)
            return 200 <= resp.status < 300
    except Exception:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `check` until it is true; raise a TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s")


class ManagedProcess:
    """A long-lived server started in its own session and remembered in `pid_file`, so a later
    `twotower` process can find it, check it and stop exactly it (never by name)."""

    pid_file: Path

    def healthy(self) -> bool:
        raise NotImplementedError

    def running(self) -> ProcessRef | None:
        try:
            ref = ProcessRef.from_json(json.loads(self.pid_file.read_text()))
        except (OSError, ValueError, KeyError):
            return None
        return ref if ref.alive() else None

    def stop(self) -> None:
        ref = self.running()
        if ref is not None:
            terminate([ref])
        self.pid_file.unlink(missing_ok=True)

    def spawn(
        self, cmd: list[str], *, log: Path, cwd: Path, timeout: float, what: str, env=None
    ) -> ProcessRef:
        """Start `cmd`, record it, wait until it answers; one that never does is stopped again."""
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        ref = ProcessRef.of(proc.pid)
        self.pid_file.write_text(json.dumps(ref.to_json()))
        try:
            wait_until(lambda: proc.poll() is None and self.healthy(), timeout, what)
        except TimeoutError:
            self.stop()
            raise
        return ref
