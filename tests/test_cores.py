"""The identity worker's core of its own (issue #16, ``pipeline/cores.py``):
``TrackerOptions.worker_cpu``, the worker process kept to it, and the frames'
thread and MediaPipe's graph threads kept off it while a job is computed."""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from skimage import data as skdata

from avatarizer.pipeline import cores as C
from avatarizer.video import TrackerOptions
from conftest import warm_up

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread CPU sets (sched_setaffinity) are Linux's")


def _cpus() -> frozenset:
    return frozenset(os.sched_getaffinity(0))


two_cpus = pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                              reason="needs Linux and at least 2 CPUs this process may run on")


def test_worker_cpu_option_checked():
    assert TrackerOptions().worker_cpu == "auto"
    assert TrackerOptions(worker_cpu=None).worker_cpu is None
    assert TrackerOptions(worker_cpu=np.int64(3)).worker_cpu == 3
    for bad in (-1, True, 1.0, "1", "last", 1 << 16):
        with pytest.raises(ValueError, match="worker_cpu"):
            TrackerOptions(worker_cpu=bad)


@linux
def test_plan_takes_the_last_allowed_cpu_and_none_where_there_is_nothing_to_split(monkeypatch):
    monkeypatch.setattr(C, "_allowed", lambda: frozenset({0, 2, 5}))
    split = C.CoreSplit.plan("auto")
    assert split.worker_cpu == 5 and split.frame_cpus == {0, 2} and not split.active
    assert C.CoreSplit.plan(2).worker_cpu == 2 and C.CoreSplit.plan(2).frame_cpus == {0, 5}
    assert C.CoreSplit.plan(1) is None  # not one this process may run on (logged)
    assert C.CoreSplit.plan(None) is None
    monkeypatch.setattr(C, "_allowed", lambda: frozenset({3}))
    assert C.CoreSplit.plan("auto") is None  # one CPU: nothing to split
    monkeypatch.setattr(C, "_allowed", lambda: None)  # not Linux
    assert C.CoreSplit.plan("auto") is None
    with pytest.raises(ValueError):
        C.CoreSplit(1, {1, 2})
    split.release()


class FakeCpus:
    """Thread CPU sets in a table (as if the machine had ``n`` CPUs): stands in
    for ``os.sched_getaffinity`` / ``os.sched_setaffinity`` in ``cores``."""

    def __init__(self, monkeypatch, n: int, tids):
        self.all = frozenset(range(n))
        self.sets = {t: self.all for t in tids}  # (0: the calling thread; the others graph threads)
        monkeypatch.setattr(C, "_allowed", lambda: self.all)
        monkeypatch.setattr(C, "_graph_threads", lambda: [t for t in self.sets if t])
        monkeypatch.setattr(C, "_tasks", lambda: set(self.sets))
        monkeypatch.setattr(C.os, "sched_getaffinity", lambda t: self.sets[t])
        monkeypatch.setattr(C.os, "sched_setaffinity", lambda t, c: self.sets.__setitem__(t, frozenset(c)))


def test_auto_gives_each_live_split_a_cpu_of_its_own_while_one_is_left_for_the_frames(monkeypatch):
    fake = FakeCpus(monkeypatch, 4, [])
    a, b = C.CoreSplit.plan("auto"), C.CoreSplit.plan("auto")
    assert (a.worker_cpu, b.worker_cpu) == (3, 2)
    c = C.CoreSplit.plan("auto")  # 0 and 1 unclaimed: 1, leaving 0 to the frames
    assert c.worker_cpu == 1
    assert C.CoreSplit.plan("auto").worker_cpu == 3  # none but 0 left: the last, shared (dropped: released)
    b.release()
    d = C.CoreSplit.plan("auto")
    assert d.worker_cpu == 2  # b's CPU back
    for x in (a, c, d):
        x.release()
    fake.all = frozenset({0, 1})
    e, f = C.CoreSplit.plan("auto"), C.CoreSplit.plan("auto")
    assert e.worker_cpu == f.worker_cpu == 1
    e.release(), f.release()


def test_overlapping_jobs_of_two_splits_keep_off_both_cpus_then_give_every_set_back(monkeypatch):
    """A's job, then B's (another CPU), A ends, B ends: the graph threads
    keep off both CPUs while both compute, off B's alone after A's, and have
    their own sets back after both (the second split once saved the first's
    reduced set and put it back last)."""
    fake = FakeCpus(monkeypatch, 4, [101, 102])
    fake.sets[102] = frozenset({0, 1, 2, 3})
    a, b = C.CoreSplit.plan("auto"), C.CoreSplit.plan("auto")
    a.job_started(), b.job_started()
    assert fake.sets[101] == fake.sets[102] == {0, 1}
    a.job_ended()
    assert fake.sets[101] == {0, 1, 3}
    b.job_ended()
    assert fake.sets[101] == fake.sets[102] == {0, 1, 2, 3}
    # the other order of ends, and a set changed by the app meanwhile is left as it is
    a.job_started(), b.job_started()
    fake.sets[102] = frozenset({0})  # (taskset during the jobs)
    b.job_ended(), a.job_ended()
    assert fake.sets[101] == {0, 1, 2, 3} and fake.sets[102] == {0}
    a.release(), b.release()


def test_a_job_over_max_pin_s_pins_nothing_more(monkeypatch):
    """A stopped or hung worker: the first frame after MAX_PIN_S ends the
    job's pins (the graph threads get their sets back) and is not pinned."""
    fake = FakeCpus(monkeypatch, 2, [101, 0])
    split = C.CoreSplit.plan("auto")
    split.job_handed_over()
    split.job_started()
    assert fake.sets[101] == {0}
    with split.frame():
        assert fake.sets[0] == {0}  # (0: the calling thread, in the fake table)
    assert fake.sets[0] == {0, 1}
    split._since -= C.MAX_PIN_S + 1
    with split.frame():
        assert fake.sets[0] == {0, 1}
    assert not split.active and fake.sets[101] == {0, 1}
    split.job_ended()  # (the answer that comes at last: nothing more to do)
    assert fake.sets[101] == {0, 1}
    split.release()


def _on_thread(fn):
    """Runs ``fn`` on a fresh thread (its CPU set is its own) and returns what it returned."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@two_cpus
def test_frame_keeps_off_the_worker_cpu_only_while_a_job_runs_and_gives_the_set_back():
    split = C.CoreSplit.plan("auto")

    def frame():
        before = _cpus()
        with split.frame():
            inside = _cpus()
        return before, inside, _cpus()

    before, inside, after = _on_thread(frame)
    assert inside == before == after  # no job: nothing pinned
    split.job_handed_over()
    assert split.active
    before, inside, after = _on_thread(frame)
    assert inside == before - {split.worker_cpu} and split.worker_cpu not in inside
    assert after == before  # its own set again

    def raising():
        try:
            with split.frame():
                raise KeyError("x")
        except KeyError:
            return _cpus()

    assert _on_thread(raising) == before  # given back when the frame fails too

    def only_worker_cpu():  # a thread the app keeps to the worker's CPU alone is left as it is
        os.sched_setaffinity(0, {split.worker_cpu})
        with split.frame():
            return _cpus()

    assert _on_thread(only_worker_cpu) == {split.worker_cpu}

    def starts_a_thread():  # a thread started in the frame (inheriting its set) gets the caller's own back
        got = []
        with split.frame():
            t = threading.Thread(target=lambda: (got.append(_cpus()), time.sleep(0.3)))
            t.start()
            time.sleep(0.05)
        after = frozenset(os.sched_getaffinity(t.native_id))
        t.join()
        return got[0], after

    during, after = _on_thread(starts_a_thread)
    assert split.worker_cpu not in during and after == before

    def app_changes_its_set():  # a set the app gave itself in the frame stays
        with split.frame():
            os.sched_setaffinity(0, {split.worker_cpu})  # (any set but the one the frame gave it)
        return _cpus()

    assert _on_thread(app_changes_its_set) == {split.worker_cpu}
    split.job_ended()
    assert not split.active
    split.release()


@two_cpus
def test_job_pins_the_graph_threads_and_the_worker_and_gives_them_back(monkeypatch):
    """The graph threads (here a stand-in thread) keep off the worker's CPU
    from job_started to job_ended, then have their own set again; the
    worker process's threads keep to its CPU, and while a stream runs
    neither happens (the worker may use every CPU)."""
    from avatarizer import native

    split = C.CoreSplit.plan("auto")
    ready, stop, tid = threading.Event(), threading.Event(), []
    t = threading.Thread(target=lambda: (tid.append(threading.get_native_id()), ready.set(), stop.wait()))
    t.start()
    ready.wait()
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        monkeypatch.setattr(C, "_graph_threads", lambda: list(tid))
        full = frozenset(os.sched_getaffinity(tid[0]))
        split.job_started(child.pid)
        assert frozenset(os.sched_getaffinity(tid[0])) == full - {split.worker_cpu}
        assert frozenset(os.sched_getaffinity(child.pid)) == {split.worker_cpu}
        assert split.active and split.pinned_jobs == 1
        split.job_ended()
        assert frozenset(os.sched_getaffinity(tid[0])) == full and not split.active
        assert frozenset(os.sched_getaffinity(child.pid)) == {split.worker_cpu}  # (it stays on its CPU)
        native.stream_started(+1)
        try:
            split.job_started(child.pid)
            assert not split.active and split.pinned_jobs == 1
            assert frozenset(os.sched_getaffinity(tid[0])) == full
            assert frozenset(os.sched_getaffinity(child.pid)) == split.frame_cpus | {split.worker_cpu}
            split.job_ended()
        finally:
            native.stream_started(-1)
        split.job_started(child.pid)  # the stream is over: kept to its CPU again
        assert frozenset(os.sched_getaffinity(child.pid)) == {split.worker_cpu}
        split.job_ended()
        split.release()
    finally:
        child.kill()
        child.wait()
        stop.set()
        t.join()


@two_cpus
def test_video_mode_worker_process_runs_on_its_cpu_and_frames_keep_off_it():
    """Through the API: the worker process runs on the planned CPU alone
    (Linux: its CPU set), jobs are computed with the graph threads kept off
    it, and after the jobs MediaPipe's graph threads have every CPU again;
    ``worker_cpu=None`` plans nothing."""
    from avatarizer.api import Avatarizer

    img = np.ascontiguousarray(skdata.astronaut())
    with Avatarizer(mode="video", max_faces=1) as av:
        stage = av._pipeline["identity"]
        split = av._pipeline.cores
        assert split is stage.cores and split.worker_cpu == max(_cpus())
        t = warm_up(av, img)
        end = time.monotonic() + 90
        while split.pinned_jobs < 2:
            assert time.monotonic() < end, (stage.worker, stage.answers, stage.last_error)
            stage._rest_until = 0.0
            assert av.from_frame(img, timestamp_ms=t) is not None
            t += 250.0
            time.sleep(0.02)
        assert stage.worker == "process"
        assert frozenset(os.sched_getaffinity(stage._remote.pid)) == {split.worker_cpu}
        assert stage.wait_idle(30)
        graph = C._graph_threads()
        assert graph, "no MediaPipe graph thread found by name"
        assert all(frozenset(os.sched_getaffinity(g)) == _cpus() for g in graph)  # given back
    assert split.worker_cpu not in C._claimed  # close() gave its CPU back
    with Avatarizer(mode="video", max_faces=1, tracker=TrackerOptions(worker_cpu=None)) as av:
        assert av._pipeline.cores is None and av._pipeline["identity"].cores is None
    with Avatarizer(mode="video", max_faces=1, tracker=TrackerOptions(identity_worker="thread")) as av:
        assert av._pipeline.cores is None  # a thread shares the process's CPUs: nothing to split


def test_bench_worker_cpu_argument_reaches_the_tracker_and_bad_values_are_usage_errors(monkeypatch, capsys):
    """``bench --worker-cpu`` (auto, none, a CPU number) is passed to
    ``TrackerOptions.worker_cpu``; anything else is argparse's exit 2."""
    from avatarizer import bench
    from avatarizer.cli import main

    seen = []

    def fake_run(**kw):
        seen.append(kw["worker_cpu"])
        raise ValueError("stop here")

    monkeypatch.setattr(bench, "run", fake_run)
    for text, want in (("auto", "auto"), ("none", None), ("1", 1)):
        assert main(["bench", "--frames", "2", "--worker-cpu", text]) == 1  # (fake_run's one-line error)
        assert seen[-1] == want
    assert main(["bench", "--frames", "2"]) == 1 and seen[-1] == "auto"
    for bad in ("-1", "last", "1.5", ""):
        with pytest.raises(SystemExit) as e:
            main(["bench", "--frames", "2", "--worker-cpu", bad])
        assert e.value.code == 2
    assert "--worker-cpu" in capsys.readouterr().err


@linux
def test_worker_cpu_that_is_not_allowed_is_logged_and_plans_nothing(monkeypatch, caplog):
    monkeypatch.setattr(C, "_allowed", lambda: frozenset({0, 1}))
    with caplog.at_level("WARNING", logger="avatarizer"):
        assert C.CoreSplit.plan(7) is None
    assert "worker_cpu=7 is not one of the CPUs" in caplog.text


def test_a_frame_reads_the_busy_cpus_under_the_lock(monkeypatch):
    """The frames' thread reads the busy workers' CPUs while the worker
    thread adds and removes jobs under the lock: read without it, the table
    changed size during iteration and RuntimeError came out of
    Avatarizer.run (a review, session 63: once in 1,647 to 431,528 frames)."""
    fake = FakeCpus(monkeypatch, 2, [0])
    a = C.CoreSplit(1, {0})
    held = []
    excluded = C._excluded
    monkeypatch.setattr(C, "_excluded", lambda: (held.append(C._lock.locked()), excluded())[1])
    a.job_handed_over()
    with a.frame():
        assert fake.sets[0] == {0}
    a.job_ended()
    a.release()
    assert held and all(held), held


def test_a_graph_thread_started_in_a_frame_gets_the_frames_own_set_back_after_another_job(monkeypatch):
    """A MediaPipe graph thread started during a pinned frame (a new graph
    after reset()) inherits the frame's reduced set; another Avatarizer's job
    starting meanwhile recorded that reduced set as the thread's own, and it
    never got the worker's CPU back (a review, session 63)."""
    fake = FakeCpus(monkeypatch, 4, [0])
    a, b = C.CoreSplit(3, {0, 1, 2}), C.CoreSplit(2, {0, 1, 3})
    a.job_handed_over()
    with a.frame():
        assert fake.sets[0] == {0, 1, 2}
        fake.sets[777] = fake.sets[0]  # a new graph thread: it inherits the frame's set
        b.job_started()
        assert fake.sets[777] == {0, 1}
    a.job_started(), a.job_ended(), b.job_ended()
    assert fake.sets[0] == fake.sets[777] == {0, 1, 2, 3}
    a.release(), b.release()
