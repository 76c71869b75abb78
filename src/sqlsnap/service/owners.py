"""Which service process owns a job, and whether that process is still alive: what lets several
``sqlsnap serve`` processes share one state database without failing each other's exports.

Every process has an instance id, ``<host>:<pid>:<random>``. A job's row names its owner and
carries the owner's heartbeat: the owner writes the time (and the job's progress) every
``HEARTBEAT_SECONDS`` while the job is queued or running. A process fails a queued or running
job of another owner (at its start, then at each of its own beats) only when that owner is gone:

- on the same host, at once when its process no longer exists, or when its pid is now this
  process's own (a container restarted: the service is pid 1 again) under another random part;
- anywhere, when its heartbeat is older than ``STALE_SECONDS``.

Rows written before owners existed have none: they count as gone, as before.
"""

from __future__ import annotations

import os
import secrets
import socket

#: How often an owner beats: the pages of other processes show its jobs' progress this fresh.
HEARTBEAT_SECONDS = 2.0
#: A heartbeat older than this means its process is gone. A beat is one UPDATE, but it waits
#: for the state database while another writer holds it: SQLite's busy timeout here is 10 s
#: (:class:`.state.State`), so a live process can be 10 s late; 30 s leaves three such waits
#: before a live process's job could be taken for dead. On one host a dead process is seen at
#: once (its pid is gone), so the wait only applies across hosts (a shared PostgreSQL state).
STALE_SECONDS = 30.0


def new_instance() -> str:
    """This process's id as an owner: host, pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def gone(owner: str | None, heartbeat: float | None, at: float, me: str) -> bool:
    """Whether the process ``owner`` (last heard of at ``heartbeat``) is gone, seen at ``at``
    by the process ``me``."""
    if owner == me:
        return False
    if owner is None or heartbeat is None or heartbeat < at - STALE_SECONDS:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    my_host, _, my_rest = me.partition(":")
    if host != my_host or not pid_text.isdigit():
        return False  # another machine: only its heartbeat can tell
    pid = int(pid_text)
    if str(pid) == my_rest.partition(":")[0]:
        return True  # our own pid, another instance: its process was this one's predecessor
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user has that pid now: wait for the heartbeat
    return False
