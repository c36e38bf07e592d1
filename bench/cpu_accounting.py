"""CPU seconds per role in a Ray build, from the operating system (psutil): the driver (its own write, dedup and
Ray Data's scheduling), Ray Data's stage tasks, the embed actor, the parallel writer's fragment-writing tasks, idle
or starting workers and Ray's own processes (raylet, GCS, dashboard, log monitor and its helper actors). Read from the
driver's process tree, which under a local `ray.init` holds every Ray process.
Why: the 1 -> 2 CPU scaling of the pipeline is not 2x, and a ratio alone does not say where the rest goes."""

from __future__ import annotations

import re
import threading

import psutil

ROLES = ("driver", "stage tasks", "embed actor", "write tasks", "ray system", "idle workers")
# Ray Data names a worker after the operator it runs, `ray::<Operator>(<function or class>)`, with `.<method>`
# appended while an actor runs one: `ray::MapBatches(run_cpu_stages)`, `ray::MapWorker(MapBatches(Embed)).submit`.
# Ray's helper actors carry no parenthesised operator: `ray::_StatsActor`, `ray::DashboardAgent`, ...
_OPERATOR = re.compile(r"^ray::\w+\(")


def role(title: str) -> str:
    """The role of a process, from its title (Ray sets a worker's title to what it runs, as of Ray 2.60)."""
    if title.startswith("ray::IDLE") or "ray/_private/workers/" in title:
        return "idle workers"  # a worker between tasks, or still starting (not yet titled)
    if not _OPERATOR.match(title):
        return "ray system"
    if "(Embed)" in title:
        return "embed actor"
    if "write_fragments" in title:
        return "write tasks"
    return "stage tasks"


def _role(process: psutil.Process) -> str:
    try:
        return role(" ".join(process.cmdline()) or process.name())
    except psutil.Error:
        return "ray system"


def _times() -> dict[int, tuple[str, float]]:
    me = psutil.Process()
    out = {me.pid: ("driver", sum(me.cpu_times()[:2]))}
    for child in me.children(recursive=True):
        try:
            out[child.pid] = (_role(child), sum(child.cpu_times()[:2]))
        except psutil.Error:
            continue
    return out


class CpuMonitor:
    """CPU seconds per role used while the `with` block runs. Polls the process tree every `every` seconds and
    charges each process's CPU time since the last poll to the role it has at this poll (a Ray worker is idle, then
    runs a task, then idles again); a process that exits meanwhile keeps what it used up to its last poll."""

    def __init__(self, every: float = 0.2):
        self.every = every
        self.used = dict.fromkeys(ROLES, 0.0)
        self.processes = {role: set() for role in ROLES}  # pids that did work in each role (one worker may hold two)
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()

    def __enter__(self) -> CpuMonitor:
        self._seen = {pid: seconds for pid, (_, seconds) in _times().items()}
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _charge(self) -> None:
        for pid, (role, seconds) in _times().items():
            spent = seconds - self._seen.get(pid, 0.0)
            self.used[role] += spent
            if spent > 0:
                self.processes[role].add(pid)
            self._seen[pid] = seconds

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self._charge()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._charge()


def describe(used: dict, wall: float, cpus: int, processes: dict | None = None) -> str:
    """One line: each role's CPU seconds and share of the cores' time (and in how many processes), and the idle
    rest."""
    available = wall * cpus
    processes = processes or {}
    parts = [f"{role} {used.get(role, 0.0):.1f}s ({used.get(role, 0.0) / available:.0%}"
             + (f", {processes[role]} processes)" if role in processes else ")") for role in ROLES]
    idle = available - sum(used.get(role, 0.0) for role in ROLES)
    return f"   CPU over {available:.0f} core-seconds: " + ", ".join(parts) + f", cores idle {idle:.1f}s " \
           f"({idle / available:.0%})"
