"""Lease owner ids: they fit their column, name this process, and tell a dead process of
this host from a live one or one on another host."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

from leadrelay.core.delivery.owner import (
    dead_on_this_host,
    host_token,
    new_owner_id,
    parse_owner,
    process_start,
    this_process,
)


def test_an_owner_id_fits_its_column_and_names_this_process() -> None:
    owner_id = new_owner_id()
    assert len(owner_id) <= 64
    assert parse_owner(owner_id) == this_process()
    assert new_owner_id() != owner_id  # two workers of one process stay apart


def test_long_host_names_are_cut_and_told_apart_by_a_hash() -> None:
    first = host_token("leadrelay-worker-7d9f8c6b5d-x2x4z.cluster.internal", "pid:[1]")
    second = host_token("leadrelay-worker-7d9f8c6b5d-k9p2q.cluster.internal", "pid:[1]")
    assert len(first) <= 29
    assert len(second) <= 29
    assert first != second
    owner_id = new_owner_id(dataclasses.replace(this_process(), host=first))
    assert len(owner_id) <= 64


def test_this_process_and_a_running_one_are_alive() -> None:
    assert not dead_on_this_host(new_owner_id())
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as child:
        me = this_process()
        owner = dataclasses.replace(me, pid=child.pid, start=process_start(child.pid))
        assert not dead_on_this_host(new_owner_id(owner), me)
        child.communicate(b"")
    assert dead_on_this_host(new_owner_id(owner), me)


def test_a_reused_pid_or_a_reboot_means_the_owner_is_gone() -> None:
    me = this_process()
    # This pid with another start time: a process that had this pid before, now gone
    # (judged from a sibling's point of view, or it would be this process itself).
    reused = dataclasses.replace(me, start="1")
    sibling = dataclasses.replace(me, pid=os.getpid() + 1)
    assert dead_on_this_host(new_owner_id(reused), sibling)
    rebooted = dataclasses.replace(me, boot="00000000")
    assert dead_on_this_host(new_owner_id(rebooted), me)


def test_owners_on_other_hosts_or_unreadable_ids_are_left_to_expire() -> None:
    elsewhere = dataclasses.replace(this_process(), host="another-host", pid=1)
    assert not dead_on_this_host(new_owner_id(elsewhere))
    # Same host name, another pid namespace (a container with host networking): its pids
    # are not ours to look up.
    container = host_token(socket.gethostname(), "pid:[4026532999]")
    assert container != this_process().host
    beside = dataclasses.replace(this_process(), host=container, pid=999_999)
    assert not dead_on_this_host(new_owner_id(beside))
    assert not dead_on_this_host("worker-a")
