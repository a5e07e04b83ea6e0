"""A core of its own for the identity worker process (issue #16).

Video mode hands the face and hair networks to a worker process every
``TrackerOptions.identity_every_ms`` (:mod:`.identity_worker`). On a small
CPU its job shared the cores with the frames, and the frames that overlapped
it were the slow tail: on the 2-core development machine ``bench``'s loop
had p99/p50 1.75-2.0 (landmarks alone in the same loop: p99 6.3-8.3 ms on a
p50 of ~3). Neither the worker's priority (nice 10 or 19), Linux's idle
policy for it, nor a 0.1 ms EEVDF slice moved that (session 58, scratch
runs, 2 each); keeping the frames' work off the core the worker runs on did:

* the worker process runs on one CPU (:attr:`CoreSplit.worker_cpu`, the last
  this process may run on);
* while it computes a job, MediaPipe's graph threads in this process (the
  landmarks: threads named ``mediapipe/...``) and the thread running a frame
  (:meth:`CoreSplit.frame`, around ``Pipeline.run``) may run on the other
  CPUs only; each gets its own CPU set back afterwards (the frame's thread
  when the frame is done, the graph threads when the answer is in).

Same loop (``avatarizer bench --frames 300 --video ../shared/data/video``,
runs interleaved, 3 with this module as it is and 3 before the worker was let
onto every CPU during streams): p99/p50 1.39-1.41 and 1.19-1.25 against
1.76-1.90 with ``--worker-cpu none``. In scratch runs the worker pinned alone, or with
only the graph threads or only the frame's thread kept off its core, stayed
at 1.85-2.05 (the frame's Python and render, ~2 ms of its ~5, then ran
beside the worker). Nothing is pinned between jobs (the worker rests
``identity_duty`` of the time), so other processes of an app get every core
back as soon as an answer is in, and nothing while an ``Avatarizer.stream()``
runs in this process (the worker may then use every CPU too): a stream
overlaps one frame's landmarks with the last one's render on two cores
(pinned, its throughput fell from ~1.25x to ~1.15x the sequential rate).

Linux only (``os.sched_setaffinity`` on thread ids); elsewhere, on one CPU,
or with ``TrackerOptions(worker_cpu=None)`` nothing is planned and nothing
is pinned.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

#: the threads :meth:`CoreSplit.job_started` keeps off the worker's core: MediaPipe names its graph's threads
#: ``mediapipe/<id>`` (``/proc/self/task/<id>/comm``)
GRAPH_THREAD_PREFIX = "mediapipe"


def _allowed() -> frozenset | None:
    """The CPUs this thread may run on, or None where that cannot be read or set."""
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        return frozenset(os.sched_getaffinity(0))
    except OSError:
        return None


def _streams_running() -> bool:
    from .. import native

    return native.streams_running()


class CoreSplit:
    """Where the worker process runs, and the CPUs a frame keeps to while it
    computes (see the module doc). Made by :meth:`plan`.

    Attributes:
        worker_cpu: the CPU the worker process runs on.
        frame_cpus: the others (of those this process could run on when
            planned).
        active: a job is being computed in the worker process (set and
            cleared on the stage's worker thread).
        pinned_jobs: jobs during which the graph threads were kept off the
            worker's core (for tests and ``bench``).
    """

    def __init__(self, worker_cpu: int, frame_cpus):
        self.worker_cpu = int(worker_cpu)
        self.frame_cpus = frozenset(frame_cpus)
        if not self.frame_cpus or self.worker_cpu in self.frame_cpus:
            raise ValueError("frame_cpus must be other CPUs than the worker's")
        self.active = False
        self.pinned_jobs = 0
        self._saved: dict[int, frozenset] = {}  # graph thread id -> its CPU set before the job
        self._worker_pinned: dict[int, bool] = {}  # worker process id -> kept to worker_cpu (it starts so)
        self._lock = threading.Lock()

    @classmethod
    def plan(cls, setting) -> "CoreSplit | None":
        """The split for ``TrackerOptions.worker_cpu`` (``"auto"``: the last
        CPU this process may run on; a CPU number; None: none), or None
        where there is nothing to split: not Linux, fewer than 2 CPUs
        allowed, or the CPU asked for is not one of them."""
        if setting is None:
            return None
        allowed = _allowed()
        if allowed is None or len(allowed) < 2:
            return None
        cpu = max(allowed) if setting == "auto" else int(setting)
        if cpu not in allowed:
            return None
        return cls(cpu, allowed - {cpu})

    def __repr__(self) -> str:
        return f"CoreSplit(worker_cpu={self.worker_cpu}, frame_cpus={sorted(self.frame_cpus)})"

    # -- around a job
    def job_handed_over(self) -> None:
        """The frame that hands a job over (its thread, as the job is queued):
        the frames from the next one on keep off the worker's core (not while
        a stream runs: see the module doc)."""
        self.active = not _streams_running()

    def job_started(self, worker_pid: int | None = None) -> None:
        """The stage's worker thread, before it sends the job: this process's
        MediaPipe graph threads keep off the worker's core until
        :meth:`job_ended`, and the worker process (``worker_pid``) keeps to
        it; while a stream runs, neither (the worker may then run on any of
        the CPUs, to fill the stream's idle moments)."""
        with self._lock:
            self.active = not _streams_running()
            if worker_pid is not None and self._worker_pinned.get(worker_pid) != self.active:
                cpus = {self.worker_cpu} if self.active else self.frame_cpus | {self.worker_cpu}
                _set_threads(f"/proc/{int(worker_pid)}/task", lambda tid: cpus)
                self._worker_pinned = {worker_pid: self.active}
            if not self.active:
                return
            for tid in _graph_threads():
                try:
                    old = frozenset(os.sched_getaffinity(tid))
                    new = old - {self.worker_cpu}
                    if new and new != old:
                        os.sched_setaffinity(tid, new)
                        self._saved[tid] = old
                except OSError:  # (a thread that ended meanwhile)
                    continue
            self.pinned_jobs += 1

    def job_ended(self) -> None:
        """Gives the graph threads their CPU sets back."""
        with self._lock:
            self.active = False
            saved, self._saved = self._saved, {}
            for tid, old in saved.items():
                try:
                    os.sched_setaffinity(tid, old)
                except OSError:
                    continue

    # -- a frame (the thread running it)
    @contextmanager
    def frame(self):
        """While a job is being computed, the calling thread runs on
        :attr:`frame_cpus` (those of them it may run on) until the block
        ends, then on its own CPU set again; otherwise nothing."""
        if not self.active:
            yield
            return
        try:
            old = os.sched_getaffinity(0)
            new = old - {self.worker_cpu}
            if not new or new == old:
                old = None
            else:
                os.sched_setaffinity(0, new)
        except OSError:
            old = None
        try:
            yield
        finally:
            if old is not None:
                try:
                    os.sched_setaffinity(0, old)
                except OSError:
                    pass


def _set_threads(folder: str, cpus_for) -> None:
    """Every thread listed in ``folder`` (``/proc/<pid>/task``) gets the
    CPU set ``cpus_for(thread id)``; threads that ended meanwhile, or that
    may not be moved, are left alone."""
    try:
        tasks = os.listdir(folder)
    except OSError:
        return
    for t in tasks:
        try:
            tid = int(t)
            os.sched_setaffinity(tid, cpus_for(tid))
        except (OSError, ValueError):
            continue


def _graph_threads() -> list[int]:
    """This process's MediaPipe graph threads (Linux: ``/proc/self/task``)."""
    out = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/comm", "rb") as f:
                if f.read().startswith(GRAPH_THREAD_PREFIX.encode()):
                    out.append(int(t))
        except (OSError, ValueError):
            continue
    return out


def pin_this_process(cpu: int) -> bool:
    """The worker process's start: this process (its threads made from now
    on) runs on ``cpu`` alone, where it may. Returns whether it does."""
    allowed = _allowed()
    if allowed is None or cpu not in allowed:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True
