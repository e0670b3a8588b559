"""Lease owners: which process holds a lease, and whether that process still runs.

An owner id is `host:pid.start:boot:random`, at most 64 characters (the lease and attempt
columns). `start` is the process's start time (clock ticks after boot, from /proc), so a
pid reused by a later process is not taken for the holder; `boot` is the first 8 hex
digits of the kernel's boot id, so leases from before a reboot are known dead. A process
can only judge owners on its own host, and in its own pid namespace (containers sharing a
host name, as with host networking, each have their own): elsewhere a pid means nothing
here, and such leases are left to expire. So `host` is the host name and, where /proc
tells, a short hash of the pid namespace (`name/ns`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

_MAX_OWNER_CHARS = 64  # deliveries.lease_owner, attempts.worker
# Host names longer than this are cut and tagged with a hash of the whole name, so two
# pods whose names share a long prefix never take each other for the same host.
_MAX_HOST_CHARS = 24
_HASHED_HOST_PREFIX = _MAX_HOST_CHARS - 7


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str  # "" where the platform does not tell
    boot: str  # "" where the platform does not tell


def host_token(hostname: str | None = None, namespace: str | None = None) -> str:
    name = (hostname or socket.gethostname()).replace(":", "-")
    if len(name) > _MAX_HOST_CHARS:
        name = f"{name[:_HASHED_HOST_PREFIX]}~{_digest(name, 6)}"
    namespace = pid_namespace() if namespace is None else namespace
    return f"{name}/{_digest(namespace, 4)}" if namespace else name


def pid_namespace() -> str:
    """This process's pid namespace (`pid:[4026531836]`); "" if unknown (no /proc)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _digest(text: str, length: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


def process_start(pid: int) -> str:
    """The process's start time in clock ticks after boot; "" if unknown (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Fields after the command name (which may hold spaces) start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of proc(5): starttime


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return ""


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(host_token(), pid, process_start(pid), boot_id())


def new_owner_id(owner: Owner | None = None) -> str:
    """A fresh id for one worker of this process (the random part keeps two apart)."""
    me = owner or this_process()
    owner_id = f"{me.host}:{me.pid}.{me.start}:{me.boot}:{uuid.uuid4().hex[:6]}"
    return owner_id[:_MAX_OWNER_CHARS]


def parse_owner(owner_id: str) -> Owner | None:
    parts = owner_id.split(":")
    if len(parts) != 4:
        return None
    host, process, boot, _random = parts
    pid, _, start = process.partition(".")
    if not pid.isdigit():
        return None
    return Owner(host, int(pid), start, boot)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but running
    return True


def dead_on_this_host(owner_id: str, me: Owner | None = None) -> bool:
    """True only when `owner_id` names a process of this host that no longer runs."""
    me = me or this_process()
    owner = parse_owner(owner_id)
    if owner is None or owner.host != me.host:
        return False
    if owner.boot and me.boot and owner.boot != me.boot:
        return True  # the machine restarted since
    if owner.pid == me.pid and owner.start == me.start:
        return False  # this process (another of its workers)
    if not _running(owner.pid):
        return True
    return bool(owner.start) and process_start(owner.pid) not in ("", owner.start)
