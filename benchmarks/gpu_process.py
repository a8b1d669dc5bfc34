"""Child processes that cannot outlive their parent's verdict: started in their own group, killed with it.

``python -m benchmarks.gpu`` starts each section in its own *session* (``session=True``): a
Ctrl-C in the terminal reaches only the orchestrator, which then kills every process of the
section's session, however deep (a section's CLI runs, their worker processes), so none keeps
the device or rewrites a result after the command has ended. Inside a section, each command
runs in its own process *group* of the section's session, killed as a group on timeout,
interrupt or any other exit. Should the orchestrator itself die without a word (SIGKILL, the
kernel's out-of-memory killer), :func:`exit_with_parent` makes the section end its session too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def session_pids(sid: int) -> list[int]:
    """The processes (other than this one) whose session id is ``sid`` (Linux ``/proc``; else ``[]``).

    >>> import os
    >>> from benchmarks.gpu_process import session_pids
    >>> os.getpid() in session_pids(os.getsid(0))
    False
    """
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        try:
            if pid != os.getpid() and os.getsid(pid) == sid:
                pids.append(pid)
        except OSError:  # gone meanwhile, or not ours to see
            continue
    return pids


def kill_tree(proc: subprocess.Popen, session: bool) -> None:
    """SIGKILL ``proc``'s process group and, for a session leader, every process of its session."""
    for pid in session_pids(proc.pid) if session else []:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # the group is already gone
        pass


def run_group(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None, *, session: bool = False
) -> tuple[int | None, str, str]:
    """Run ``cmd`` in its own process group: ``(exit status or None if it ran past timeout, stdout, stderr)``.

    On timeout, and on any exception here (Ctrl-C included, re-raised), the group is killed: the
    command and every process it started. ``session=True`` starts a new session instead and kills
    every process in it, also those that put themselves in groups of their own.

    >>> from benchmarks.gpu_process import run_group
    >>> rc, out, err = run_group(["echo", "hi"], timeout=10)
    >>> rc, out.strip(), err
    (0, 'hi', '')
    """
    group = {"start_new_session": True} if session else {"process_group": 0}
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **group
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc, session)
        out, err = proc.communicate()
        return None, out, err + f"\n[killed after {timeout:.0f} s]"
    except BaseException:
        kill_tree(proc, session)
        proc.communicate()
        raise
    if session:
        kill_tree(proc, session)  # what the section left running (it has ended: nothing may outlive it)
    return proc.returncode, out, err


PARENT_ENV = "GPU_CHECK_PARENT"  # the orchestrator's pid, set in each section's environment


def exit_with_parent(poll_s: float = 0.5) -> threading.Thread | None:
    """In a section process: a watcher that kills this process's session once the orchestrator has gone.

    The orchestrator names itself in ``$GPU_CHECK_PARENT``; when this process's parent is no
    longer that pid (the orchestrator died and the process was re-parented), every other
    process of the session is killed and this one exits with status 1. Without the variable
    (a section run by hand) nothing is watched.

    >>> from benchmarks.gpu_process import exit_with_parent
    >>> exit_with_parent() is None  # not started by the orchestrator
    True
    """
    parent = int(os.environ.get(PARENT_ENV) or 0)
    if not parent:
        return None

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        for pid in session_pids(os.getsid(0)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(1)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread
