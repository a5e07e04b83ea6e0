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
  this process may run on that no other ``Avatarizer`` of the process has
  claimed while another CPU is left for the frames; else the last);
* while it computes a job, MediaPipe's graph threads in this process (the
  landmarks: threads named ``mediapipe/...``) and the thread running a frame
  (:meth:`CoreSplit.frame`, around ``Pipeline.run``) keep off the CPUs of
  every job being computed; each gets its own CPU set back afterwards (the
  frame's thread, and threads it started meanwhile, when the frame is done;
  the graph threads when the last job is over), unless something else set
  another one meanwhile, which is left as it is. A job that takes longer
  than :data:`MAX_PIN_S` (a stopped or hung worker) pins nothing from then on.

Same loop (``avatarizer bench --frames 300 --video ../shared/data/video``,
runs interleaved, session 58): p99/p50 1.28-1.44 (6 runs of this module and
3 of an earlier version of it: 1.19-1.25) against 1.76-1.92 with
``--worker-cpu none``. In scratch runs the worker pinned alone, or with
only the graph threads or only the frame's thread kept off its core, stayed
at 1.85-2.05 (the frame's Python and render, ~2 ms of its ~5, then ran
beside the worker). Between jobs (the worker rests ``identity_duty`` of the
time) only the worker process stays on its CPU, so the app's threads get
every CPU back as soon as an answer is in; nor is anything pinned for the
jobs that start while an ``Avatarizer.stream()`` runs in this process (the
worker may then use every CPU too; a job under way when a stream starts
keeps its pins until it ends): a stream overlaps one frame's landmarks with
the last one's render on two cores (pinned, its throughput fell from ~1.25x
to ~1.15x the sequential rate).

Linux only (``os.sched_setaffinity`` on thread ids); elsewhere, on one CPU,
or with ``TrackerOptions(worker_cpu=None)`` nothing is planned and nothing
is pinned.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from contextlib import contextmanager

#: the threads a job keeps off the worker's core: MediaPipe names its graph's threads
#: ``mediapipe/<id>`` (``/proc/self/task/<id>/comm``)
GRAPH_THREAD_PREFIX = "mediapipe"
#: a job computed for longer than this (seconds; a stopped or hung worker process) pins nothing more
MAX_PIN_S = 2.0

# The process's pins, one table for every CoreSplit (two Avatarizers' jobs may overlap), under _lock:
_lock = threading.Lock()
_claimed: dict[int, int] = {}  # worker CPU -> live CoreSplits whose worker runs on it
_busy: dict[int, int] = {}     # worker CPU -> jobs being computed on it (with pins)
_graph: dict[int, tuple[frozenset, frozenset]] = {}  # graph thread id -> (its own CPU set, the set given it)


def _reset_after_fork() -> None:  # a forked child computes none of its parent's jobs (and its calls are refused)
    global _lock
    _lock = threading.Lock()
    _claimed.clear()
    _busy.clear()
    _graph.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _allowed() -> frozenset | None:
    """The CPUs this process (its main thread) may run on, or None where
    that cannot be read or set (not Linux)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        return frozenset(os.sched_getaffinity(os.getpid()))  # (0 would be the calling thread's own set)
    except OSError:
        return None


def _streams_running() -> bool:
    from .. import native

    return native.streams_running()


def _excluded() -> frozenset:
    """The CPUs of the jobs being computed (the frames keep off them)."""
    return frozenset(c for c, n in _busy.items() if n > 0)


def _unclaim(cpu: int) -> None:
    with _lock:
        if _claimed.get(cpu, 0) > 1:
            _claimed[cpu] -= 1
        else:
            _claimed.pop(cpu, None)


class CoreSplit:
    """Where the worker process runs, and the CPUs a frame keeps to while it
    computes (see the module doc). Made by :meth:`plan`; :meth:`release`
    (the identity stage's ``close()``) gives its CPU back.

    Attributes:
        worker_cpu: the CPU the worker process runs on.
        frame_cpus: the others (of those this process could run on when
            planned).
        active: a job is being computed in the worker process with pins.
        pinned_jobs: jobs during which the graph threads kept off the
            worker's core (for tests and ``bench``).
    """

    def __init__(self, worker_cpu: int, frame_cpus):
        self.worker_cpu = int(worker_cpu)
        self.frame_cpus = frozenset(frame_cpus)
        if not self.frame_cpus or self.worker_cpu in self.frame_cpus:
            raise ValueError("frame_cpus must be other CPUs than the worker's")
        self.active = False
        self.pinned_jobs = 0
        self._counted = False      # this split's job is counted in _busy
        self._since = 0.0          # monotonic time its job started
        self._worker_pinned: dict[int, bool] = {}  # worker process id -> kept to worker_cpu (it starts so)
        with _lock:
            _claimed[self.worker_cpu] = _claimed.get(self.worker_cpu, 0) + 1
        self._release = weakref.finalize(self, _unclaim, self.worker_cpu)

    @classmethod
    def plan(cls, setting) -> "CoreSplit | None":
        """The split for ``TrackerOptions.worker_cpu`` (``"auto"``: the last
        CPU this process may run on that no other live split has claimed,
        while at least one other is left unclaimed, else the last; a CPU
        number; None: none), or None where there is nothing to split: not
        Linux, fewer than 2 CPUs allowed, or the CPU asked for is not one
        of them (logged)."""
        if setting is None:
            return None
        allowed = _allowed()
        if allowed is None or len(allowed) < 2:
            return None
        if setting == "auto":
            with _lock:
                free = allowed - {c for c, n in _claimed.items() if n > 0}
            cpu = max(free) if len(free) >= 2 else max(allowed)
        else:
            cpu = int(setting)
            if cpu not in allowed:
                logging.getLogger("avatarizer").warning(
                    "worker_cpu=%d is not one of the CPUs this process may run on (%s): the identity worker "
                    "runs on any", cpu, ",".join(map(str, sorted(allowed))))
                return None
        return cls(cpu, allowed - {cpu})

    def release(self) -> None:
        """Ends a job's pins (if any) and gives the CPU back to :meth:`plan`."""
        self.job_ended()
        self._release()

    def __repr__(self) -> str:
        return f"CoreSplit(worker_cpu={self.worker_cpu}, frame_cpus={sorted(self.frame_cpus)})"

    # -- around a job
    def job_handed_over(self) -> None:
        """The frame that hands a job over (its thread, as the job is queued):
        the frames from the next one on keep off the worker's core (not while
        a stream runs: see the module doc)."""
        with _lock:
            self.active = not _streams_running()
            if self.active:
                self._count()

    def _count(self) -> None:  # (under _lock)
        if not self._counted:
            _busy[self.worker_cpu] = _busy.get(self.worker_cpu, 0) + 1
            self._counted = True
        self._since = time.monotonic()

    def job_started(self, worker_pid: int | None = None) -> None:
        """The stage's worker thread, before it sends the job: this process's
        MediaPipe graph threads keep off the busy workers' CPUs until
        :meth:`job_ended`, and the worker process (``worker_pid``) keeps to
        its CPU; while a stream runs, neither (the worker may then run on any
        of the CPUs, to fill the stream's idle moments)."""
        with _lock:
            self.active = not _streams_running()
            if worker_pid is not None and self._worker_pinned.get(worker_pid) != self.active:
                cpus = {self.worker_cpu} if self.active else self.frame_cpus | {self.worker_cpu}
                _set_threads(f"/proc/{int(worker_pid)}/task", cpus)
                self._worker_pinned = {worker_pid: self.active}
            if not self.active:
                if self._counted:
                    self._uncount()
                    _apply_graph()
                return
            self._count()
            _apply_graph()
            self.pinned_jobs += 1

    def _uncount(self) -> None:  # (under _lock)
        if self._counted:
            _busy[self.worker_cpu] -= 1
            if not _busy[self.worker_cpu]:
                del _busy[self.worker_cpu]
            self._counted = False

    def job_ended(self) -> None:
        """The job is over (answered, failed, dropped, or pinned for longer
        than :data:`MAX_PIN_S`): the graph threads get their own CPU sets
        back once no other job keeps them off a CPU. Calling it again does
        nothing."""
        with _lock:
            self.active = False
            if self._counted:
                self._uncount()
                _apply_graph()

    # -- a frame (the thread running it)
    @contextmanager
    def frame(self):
        """While a job is being computed, the calling thread keeps off the
        busy workers' CPUs (those of its own it may) until the block ends;
        then it, and any thread it started meanwhile (they inherit its CPU
        set), get its own set back, unless something set them another one
        meanwhile. Otherwise, nothing."""
        if not self.active:
            yield
            return
        if time.monotonic() - self._since > MAX_PIN_S:  # a stopped or hung worker: no more pins for it
            self.job_ended()
            yield
            return
        old = new = before = None
        try:
            mine = frozenset(os.sched_getaffinity(0))
            with _lock:  # (the worker thread adds and removes jobs meanwhile: a dict changing size)
                busy = _excluded()
            target = mine - busy
            if target and target != mine:
                before = _tasks()
                os.sched_setaffinity(0, target)
                old, new = mine, target
        except OSError:
            old = None
        try:
            yield
        finally:
            if old is not None:
                _give_back(0, new, old)
                started = _tasks() - before  # (threads started in the frame: a new graph, render helpers)
                with _lock:
                    for tid in started:
                        rec = _graph.get(tid)
                        if rec is not None and rec[0] == new:
                            # a job that started meanwhile took the frame's set for the graph thread's own
                            # (it inherited it): its own is the frame's thread's, or it never got it back
                            _graph[tid] = (old, rec[1])
                for tid in started:
                    _give_back(tid, new, old)


def _give_back(tid: int, given: frozenset, own: frozenset) -> None:
    """``tid`` (0: the calling thread) gets ``own`` back if its CPU set is
    still ``given``."""
    try:
        if frozenset(os.sched_getaffinity(tid)) == given:
            os.sched_setaffinity(tid, own)
    except OSError:  # (a thread that ended meanwhile)
        pass


def _apply_graph() -> None:
    """(under _lock) Every MediaPipe graph thread keeps off the busy CPUs
    (:func:`_excluded`), or gets its own set back when none is busy; a thread
    whose set was changed by something else meanwhile keeps that one as its
    own."""
    excluded = _excluded()
    tids = _graph_threads() if excluded else list(_graph)
    for tid in tids:
        try:
            cur = frozenset(os.sched_getaffinity(tid))
            own, given = _graph.get(tid, (cur, cur))
            if cur != given:  # set by someone else since: that is its own set now
                own = cur
            target = own - excluded or own
            if target != cur:
                os.sched_setaffinity(tid, target)
            if target == own:
                _graph.pop(tid, None)
            else:
                _graph[tid] = (own, target)
        except OSError:  # (ended meanwhile)
            _graph.pop(tid, None)
    if excluded:
        listed = set(tids)
        for tid in [t for t in _graph if t not in listed]:  # threads that ended
            del _graph[tid]


def _tasks() -> set:
    """This process's thread ids (Linux: ``/proc/self/task``)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def _set_threads(folder: str, cpus) -> None:
    """Every thread listed in ``folder`` (``/proc/<pid>/task``) gets the
    CPU set ``cpus``; threads that ended meanwhile, or that may not be
    moved, are left alone."""
    try:
        tasks = os.listdir(folder)
    except OSError:
        return
    for t in tasks:
        try:
            os.sched_setaffinity(int(t), cpus)
        except (OSError, ValueError):
            continue


def _graph_threads() -> list[int]:
    """This process's MediaPipe graph threads (Linux: ``/proc/self/task``)."""
    out = []
    for t in _tasks():
        try:
            with open(f"/proc/self/task/{t}/comm", "rb") as f:
                if f.read().startswith(GRAPH_THREAD_PREFIX.encode()):
                    out.append(t)
        except OSError:
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
