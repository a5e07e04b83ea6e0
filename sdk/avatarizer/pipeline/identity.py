"""Video mode: the identity networks off the critical path (issue #16).

Who is in front of the camera changes slowly (the tracker keeps a moving
average of it), so in video mode the face stage (E_s → F → D_t, or the
auto-artist) and the hair stage (attribute regressor, segmentation,
retrieval) need not run for every frame. :class:`IdentityStage` wraps the two:

* a stream's first frame with a face (and the first of a new track: after
  the stream took the face for another person, after ``reset_ms`` without
  it, with another ``face_index`` or other attributes set by the app) runs
  them inline: there is nothing else to draw yet;
* every other frame reuses the latest answer, and a copy of its face is
  handed to one worker, which runs them: while the tracker's identity warms
  up (the median of the first ``TrackerOptions.identity_frames``
  estimates; a frame that repeats an answer adds none,
  ``StreamState.identity_used``; the worker's answer counts as frontal or
  not by the pose of the frame it was computed on) as soon as the worker
  is free, afterwards at most every ``TrackerOptions.identity_every_ms``
  (stream time) and after its rest (below). The answer is adopted by the
  first frame after it arrives. A face cut by the frame's edge
  (:data:`MAX_OUTSIDE`) is not handed over. While warming up, a frame that
  finds no new estimate for ``identity_every_ms`` of stream time (the
  worker process still starting, ~0.5 s; a slow, starved or failing
  worker) computes one itself, so that the identity warms up whatever the
  worker does (with ``identity_worker="thread"`` such a frame waits for a
  job computing on the worker thread first: they share the networks).
  Otherwise no frame waits for the worker. Until session
  31 the warm-up ran inline on every frame: a new person's first 15 frames
  took the networks' time each (8.1-8.7 ms p50 against 3.3-3.7 back to
  back in ``bench``).
* the worker computes in a child process of its own by default
  (``TrackerOptions.identity_worker="process"``,
  :mod:`avatarizer.pipeline.identity_worker`): on a thread of this process
  its networks, mostly Python and numpy, hold the GIL, and every frame that
  overlaps a job waits for it. A job is handed over when its frame is done
  (:meth:`IdentityStage.frame_done`, after the render), so at a camera's
  rate it runs in the idle time before the next frame. Frames handed over
  at 30 fps on 2 cores (session 24, ``avatarizer bench --video
  ../shared/data/video --frames 300 --live``, interleaved runs): p99/p50
  1.12-1.41 with the process (6 runs), 1.10-1.46 with the thread (4); with
  the job handed over mid-frame, 1.17-1.64 and 1.80-2.13. The stage's
  thread only hands jobs over and adopts answers. Where no
  process can or should run (see :mod:`~avatarizer.pipeline.identity_worker`:
  a frozen app, a ``sys.executable`` that is no Python, options a pickle
  cannot carry, networks on a GPU, jobs that keep failing) it computes on
  its thread, as with ``identity_worker="thread"``; :attr:`worker` says
  which, and why.
* ``identity_worker="inline"`` (video files: ``avatarizer video``)
  has no worker: the warm-up's frames and then the frame that is due by
  stream time compute their estimates and wait for them, so the avatars
  depend on the frames alone, not on how fast they came.
* once the identity is warm, the worker takes at most
  ``TrackerOptions.identity_duty`` of one core: after
  an answer that took ``d`` seconds (wall clock) no job is handed to it for
  ``d * (1 / identity_duty - 1)`` seconds. A process still shares the cores:
  in ``bench``'s loop, which hands frames over as fast as they are done (in
  stream time at 7 times real time), the frames that overlap a job remain
  the slow tail (p99/p50 1.79-2.08 with the process, 1.88-2.26 with the
  thread, in the runs above).
* the worker thread runs :data:`WORKER_NICENESS` nice levels below the rest
  of the process on Linux (:func:`lower_thread_priority`), and so does the
  worker process. On a current kernel (6.18, EEVDF: a thread that wakes
  waits for the running one's time slice whatever their nice values) this
  barely shows for a thread: on 2 cores the frames that overlap a job stayed
  the slow tail (session 23, ``bench`` 6 runs each: median p99/p50 2.04
  niced 19, no better than 10). Linux's idle policy (``SCHED_IDLE``) for the
  worker thread cut that to 1.56 but was not adopted: an idle thread is
  starved when other processes keep the CPU busy, and one starved while it
  holds the GIL stalls every thread of the process (4 busy processes on 2
  cores: a 13 ms job took 2.2 s, a frame 2.7 s, a ``reset()`` 4.1 s).
  Nor does any priority help a frame in a back-to-back loop (session 51,
  scratch ``loop.py``/``hog.py``: 500 frames of ``bench``'s paired loop, no
  refreshes, beside a busy pure-Python process): alone p99 7.1 ms on a p50
  of 5.6 (1.26); beside a process at nice 10, p99 11.0 (1.94); beside one
  under ``SCHED_IDLE``, p99 11.0 (1.96): the frames that meet it lose ~4 ms
  (a 250 Hz scheduler tick's length; not traced further; the render stage's
  p99 1.75 -> 5.3-5.4 ms, the align stage's 4.6 -> 7.8-9.0). The worker
  process put under ``SCHED_IDLE`` once ready was measured in the same
  paired loop with refreshes (scratch ``tail.py``, 750 frames: hitch 1.65 /
  1.63 against 1.68 / 1.73 as shipped, two runs each): not adopted. What
  moves the back-to-back tail is how much of the time a job runs
  (``identity_duty``: 0.25 / 0.1 / 0.05 / 0.02 gave hitch 1.69 / 1.79 / 1.61
  / 1.40 there, one run each), a trade against how often the identity is
  refreshed that has not been measured for the avatars, so the default
  stays.

The networks run with numpy's BLAS limited to one thread (threadpoolctl,
:func:`one_blas_thread`): the artist's image resizes are matrix products
large enough for OpenBLAS to use its thread pool, whose threads then
busy-wait for about 60 ms of CPU after each call, taking the core the
frames need. (ONNX Runtime sessions already run on the calling thread:
``intra_op_num_threads=1``, no pool, nothing spins.)

Every estimate but a new track's first reads its frame as a photo: the face
is found again in the frame by an image-mode face mesh of the worker's own
(:meth:`~avatarizer.pipeline.identity_worker.OwnSegmenter.still`, 5-10 ms
with one face or two: FaceMesh alone, no search for small faces),
since the tracked landmarks drift from a photo's fit (the forehead's top
up to 0.08 of the canonical frame higher on the shared clips) and the
artist, the hair's silhouette and the attribute networks were fitted and
measured on photos; d6's short hair was drawn as a buzz cut for 15 of 34
refreshes. A new track's first frame keeps its landmarks: FaceMesh has just
detected the face, as image mode does, and the image-mode graph's start
(~50 ms) would hold the first avatar up. The frames keep their tracked
landmarks for the expressions and the pose.

The worker works on a copy of the frame (the caller may reuse its buffer) and
segments with its own MediaPipe graph (so it never holds the aligner's lock
while the next frame's landmarks are due); the process gets the stream's
hair-retrieval entry with the job and its answer brings the new one. The
answer and when it was asked for belong to the stream
(:class:`~avatarizer.pipeline.state.StreamState`: ``identity``,
``identity_asked_ms``); the stage owns only the worker.
``reset()`` discards a job not yet started and waits for one being computed
on a thread (not for one in the process); either way its answer is dropped:
the stream's generation changed. ``close()`` stops the worker (and ends the
process: a job under way there is dropped).
"""
from __future__ import annotations

import copy
import os
import sys
import threading
import time

import numpy as np

from ..align import MAX_OUTSIDE  # a face cut by the frame's edge is not handed to the worker
from .base import Stage, one_blas_thread
from .cores import CoreSplit
from . import identity_worker as W
from .state import Face, FrameState

#: How much lower than the rest of the process the identity worker thread runs
#: (Linux nice levels, capped at 19; what it creates, such as its MediaPipe
#: segmentation graph's threads, inherits it). On a small CPU the frames' thread
#: and MediaPipe's then get the cores first, and a frame that overlaps the
#: worker is barely slower (issue #16).
WORKER_NICENESS = 10


def lower_thread_priority(by: int) -> bool:
    """Lowers the calling thread's scheduling priority by ``by`` nice levels
    (capped at 19), on Linux only, where a thread has its own nice value
    (``setpriority`` on its thread id). Returns whether it did; elsewhere, or
    when the system refuses, it does nothing."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS with a thread id names a process
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(by)))
    except (OSError, AttributeError):
        return False
    return True


class IdentityStage(Stage):
    """The face and hair stages: inline on a person's first frame, then on a worker."""

    name = "identity"

    def __init__(self, face: Stage, hair: Stage):
        self.face, self.hair = face, hair
        self._compute_lock = threading.Lock()   # the networks: one user at a time
        self._cond = threading.Condition()      # the worker's fields below (the stream's: stream.lock)
        self._job = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_here = False                # close() ran on the worker thread: it closes the networks
        self._segmenter = None
        self._rest_until = 0.0                  # perf_counter time before which no job is handed over
        self._in_process = False                # the job under way is the worker process's (reset() does not wait)
        self._remote = None                     # the ProcessWorker (identity_worker="process"), once started
        self._failed_in_row = 0                 # the process's error replies in a row
        self._thread_failed_in_row = 0          # the thread's own failed jobs in a row (said once at
                                                # MAX_FAILED_JOBS, as the process's are)
        self.worker = "thread"                  # where jobs are computed ("process", or "thread (why)")
        self.cores: CoreSplit | None = None     # the worker process's core and the frames' (cores.py), if split
        self.answers = 0                        # answers adopted from the worker (for tests and bench)
        self.last_error: BaseException | None = None

    def prepare(self, options) -> None:
        super().prepare(options)
        self.every_ms = float(options.tracker.identity_every_ms)
        self.rest_factor = 1.0 / float(options.tracker.identity_duty) - 1.0
        self._resolved = options
        self.worker = getattr(options.tracker, "identity_worker", "thread")  # (TrackerOptions checked it)
        self._want_process = self.worker == "process"
        self._inline = self.worker == "inline"
        self.cores = CoreSplit.plan(getattr(options.tracker, "worker_cpu", None)) if self._want_process else None
        self.face.prepare(options)
        self.hair.prepare(options)

    # -- per frame
    def run(self, state: FrameState) -> None:
        if not state.faces:  # nothing to estimate: no network, so no lock (the worker may be busy)
            return
        stream = state.stream
        with stream.lock:
            res = stream.identity
            asked = stream.identity_asked_ms
            since = stream.identity_used_ms
            pose = stream.identity_pose
            waiting = res is not None and res is not stream.identity_used  # a new answer no frame used yet
        warm = stream.tracker.warm
        ts = state.timestamp_ms
        # once warm, at most every every_ms of stream time and after the worker's rest; while warming up,
        # as soon as the worker is free
        on_time = not warm or asked is None or not 0 <= ts - asked < self.every_ms
        with self._cond:
            due = not self._busy and on_time and (not warm or time.perf_counter() >= self._rest_until)
        # warming up, no new estimate for every_ms of stream time (the worker process still starting, a
        # slow, starved or failing worker): this frame computes one, so that the identity warms up all the
        # same (a job computing on this process's thread, identity_worker="thread", holds the networks:
        # the frame then waits for it, at most once every every_ms)
        stale = not warm and not waiting and since is not None and ts - since >= self.every_ms
        if res is None or stale or (self._inline and (not warm or (
                on_time and state.faces[0].aligned.outside_fraction <= MAX_OUTSIDE))):
            # nothing to show yet (a new stream or person), a stale warm-up, or identity_worker="inline"
            # (warming up, or due on the stream's clock alone, so the avatars do not depend on how fast
            # the frames came): this frame computes its estimate
            # (a first frame with its tracked landmarks: a face just found is fitted as a photo's, and the
            # image-mode graph's start, ~50 ms, would hold the first avatar up; the later ones as photos)
            self._compute(state, as_photo=res is not None)
            a = state.faces[0].aligned
            with stream.lock:
                stream.identity = stream.identity_used = state.faces[0].identity()
                stream.identity_asked_ms = stream.identity_used_ms = stream.identity_frame_ms = ts
                stream.identity_pose = (float(a.yaw), float(a.pitch))  # (frames repeating it are judged by it)
            return
        fresh = waiting  # the first frame with this answer (only this stream's frames set identity_used)
        with stream.lock:
            stream.identity_used = res
            if fresh:
                stream.identity_used_ms = ts
        if not fresh:
            state.info["identity_fresh"] = False  # (the merge tells the tracker: no new estimate)
        if pose is not None:
            state.info["identity_pose"] = pose  # (its own frame's: whether the estimate is frontal)
        for k, v in res.items():
            setattr(state.faces[0], k, v)
        if due and state.faces[0].aligned.outside_fraction <= MAX_OUTSIDE:
            state.info["identity_due"] = stream.generation  # handed over when the frame is done (frame_done)

    def frame_done(self, state: FrameState) -> None:
        """Hands the frame's job over once the frame went through the last
        stage: at a camera's rate the job then runs in the idle time before
        the next frame instead of beside this one's merge and render (which
        it slowed: session 24, ``bench --live``). That is the pipeline's own
        render (``Avatarizer.run(frame, t, render_size=...)``); an app that
        draws the avatar itself afterwards (``from_frame`` then
        ``Avatar.render`` or ``overlay``) draws beside the job's start. A
        frame run only part of the way (``Pipeline.run(until=...)`` short of
        the last stage, never continued) hands nothing over."""
        due = state.info.pop("identity_due", None)
        # (not when the frame found another person meanwhile: the merge moved the generation on)
        if due is not None and state.stream is not None and due == state.stream.generation:
            self._submit(state)

    def _compute(self, state: FrameState, as_photo: bool = True) -> None:
        """The face and hair stages on ``state``'s face: found again in its
        frame as image mode finds it (``as_photo``,
        :meth:`~avatarizer.pipeline.identity_worker.OwnSegmenter.still`), its
        identity fields copied to ``state.faces[0]``."""
        with self._compute_lock, one_blas_thread():
            job = self._as_photo(state) if as_photo else state
            self.face.run(job)
            self.hair.run(job)
        if job is not state:
            for k, v in job.faces[0].identity().items():
                setattr(state.faces[0], k, v)
            for k, v in job.timings.items():  # (the face stage's encode time, say)
                state.timings[k] = state.timings.get(k, 0.0) + v

    def _as_photo(self, state: FrameState) -> FrameState:
        """(under ``_compute_lock``) ``state`` with its face found again as a
        photo's, in a frame state of its own (the frame's face keeps its
        tracked landmarks for the expressions); ``state`` itself for a face
        without its frame (:meth:`AlignedFace.from_landmarks`)."""
        face = state.faces[0].aligned
        ctx = face._context
        if ctx is None or ctx.aligner is None:
            return state
        if self._segmenter is None:
            self._segmenter = W.OwnSegmenter(ctx.aligner.options)
        still = self._segmenter.still(face, ctx.image)
        return FrameState(image=ctx.image, timestamp_ms=state.timestamp_ms, face_index=state.face_index,
                          settings=state.settings, generation=state.generation, faces=[Face(still)],
                          all_faces=[still], stream=state.stream)

    def _submit(self, state: FrameState) -> None:
        from ..align import _FrameContext

        with self._cond:
            if self._busy or self._closed:  # (frames of one batch: the first one's job goes)
                return

        face = state.faces[0].aligned
        ctx = face._context
        if self._segmenter is None and ctx is not None and ctx.aligner is not None:
            self._segmenter = W.OwnSegmenter(ctx.aligner.options)
        mine = copy.copy(face)
        mine._cache = {}
        mine._context = None if ctx is None else _FrameContext(ctx.image.copy(), self._segmenter)
        with state.stream.lock:
            gen = state.stream.generation
            state.stream.identity_asked_ms = state.timestamp_ms
            entry = state.stream.hair.get(0)  # (the process's hair stage starts from the stream's retrieval)
        job = FrameState(image=mine._context.image if ctx is not None else state.image,
                         timestamp_ms=state.timestamp_ms, face_index=state.face_index, settings=state.settings,
                         generation=gen, faces=[Face(mine)], all_faces=[mine], stream=state.stream)
        with self._cond:
            if self._closed:
                return
            self._job = (gen, job, entry)
            self._busy = True
            if self.cores is not None and self._remote is not None and self._remote.cpu is not None:
                self.cores.job_handed_over()  # (the next frame keeps off the worker's core already)
            if self._thread is None:
                thread = threading.Thread(target=self._work, name="avatarizer-identity", daemon=True)
                try:
                    thread.start()
                except RuntimeError as exc:  # (can't start new thread: too many at once): no job this time
                    self._drop_queued_job()
                    self.last_error = exc
                    import logging

                    logging.getLogger("avatarizer").warning("identity worker: could not start its thread (%s); "
                                                            "a later frame tries again", exc)
                    return
                self._thread = thread
            self._cond.notify_all()

    def _drop_queued_job(self) -> None:
        """(under ``_cond``) The job handed over and not started is dropped:
        the stage is free again and the frames get the worker's CPU back."""
        self._job = None
        self._busy = False
        if self.cores is not None:
            self.cores.job_ended()

    def _work(self) -> None:
        lower_thread_priority(WORKER_NICENESS)
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    closing = self._close_here
                    break
                gen, job, entry = self._job
                self._job = None
                # (marked here, with the job taken, so that reset() never waits for a job about to go
                # to the process; unmarked below before a job is computed on this thread)
                self._in_process = self._want_process
            out, err, hair_entry = None, None, None
            remote = self._process(job)
            if remote is not None:
                try:  # (its start, the first time, is not counted in the job's time: the rest after it)
                    remote.ensure_started()
                except BaseException as exc:
                    err = exc
                    remote = self._after_failure(remote, exc)
            t0 = time.perf_counter()
            if remote is not None and err is None and not self._closed:  # (closed while it started: no job)
                cores = self.cores if remote.cpu is not None else None
                if cores is not None:  # the frames keep off the worker's core while it computes
                    cores.job_started(remote.pid)
                try:
                    out, err, hair_entry = self._ask(remote, gen, job, entry)
                except BaseException as exc:  # (WorkerGone, or a job that cannot be pickled)
                    err = exc
                    remote = self._after_failure(remote, exc)
                else:
                    remote = self._after_reply(remote, err)
                finally:
                    if cores is not None:
                        cores.job_ended()
            with self._cond:
                self._in_process = False
                self._cond.notify_all()
                closed = self._closed
            stale = gen != job.stream.generation  # (reset since: its answer would be dropped)
            if remote is None and out is None and not closed and not stale:  # (no process, or given up on now)
                try:
                    self._compute(job)
                    out, err = job.faces[0].identity(), None
                    self._thread_failed_in_row = 0
                except BaseException as exc:  # kept; the identity stays as it was
                    out, err = None, exc
                    self._thread_failed_in_row += 1
                    if self._thread_failed_in_row == W.MAX_FAILED_JOBS:  # (said once a run of them: it said nothing)
                        import logging

                        logging.getLogger("avatarizer").warning(
                            "identity worker: its last %d jobs on its thread failed (%s: %s); the identity "
                            "stays as it was until one succeeds", self._thread_failed_in_row, type(exc).__name__, exc)
            done = time.perf_counter()
            stream = job.stream
            with stream.lock:  # adopted only by the stream it was asked for (not after a reset)
                # ... and only when no later frame's answer is in use: while warming up a frame computes one
                # itself when the worker is late, and the worker's answer for an earlier frame, adopted after
                # it, brought back an older estimate and hair retrieval (which then voted twice)
                newer = stream.identity_frame_ms
                adopted = out is not None and gen == stream.generation and (
                    newer is None or job.timestamp_ms is None or job.timestamp_ms >= newer)
                if adopted:
                    stream.identity = out
                    stream.identity_frame_ms = job.timestamp_ms
                    a = job.faces[0].aligned
                    stream.identity_pose = (float(a.yaw), float(a.pitch))
                    if hair_entry is not None:
                        stream.hair[0] = hair_entry
            if self.cores is not None:  # (also a job computed here, or dropped: the frames' CPUs back)
                self.cores.job_ended()
            with self._cond:
                self._busy = False
                self._rest_until = done + (done - t0) * self.rest_factor
                self.last_error = err
                self.answers += adopted
                self._cond.notify_all()
        if closing:  # close() ran on this thread (see close): the networks are let go of here
            self._close_networks()

    # -- the worker process
    def _process(self, job: FrameState):
        """The :class:`ProcessWorker` to ask (made on first use), or None: the
        thread computes (``identity_worker="thread"``, a frame without its
        aligner's context, or a process that could not be had)."""
        if not self._want_process or self._closed:
            return None
        if self._remote is None:
            if job.faces[0].aligned._context is None or self._segmenter is None:
                return None
            why = W.cannot_start()
            r = self._resolved
            on_gpu = getattr(r, "device_resolved", "cpu") != "cpu" or getattr(r, "backend", "") == "tensorrt"
            if why is None and on_gpu:
                why = "the networks run on the GPU (a second process would hold a second copy in its memory)"
            if why is not None:
                self._give_up_process(why)
                return None
            try:
                # (the aligner's options: the process's own segmenter makes its masks as this one does)
                remote = W.ProcessWorker(self._resolved, self._segmenter.options, WORKER_NICENESS,
                                         cpu=None if self.cores is None else self.cores.worker_cpu)
            except Exception as exc:  # options a pickle cannot carry: this process's networks, for good
                self._give_up_process(f"its options cannot be sent to a process: {type(exc).__name__}: {exc}")
                return None
            with self._cond:  # (close() reads it under the lock: one made after close() is never started)
                if self._closed:
                    return None
                self._remote = remote
        return self._remote

    def _ask(self, remote, gen: int, job: FrameState, entry):
        """One job through the process: ``(identity, error, hair entry)``."""
        face = copy.copy(job.faces[0].aligned)
        face._context = None  # (the image goes as it is; the process makes its own context)
        reply = remote.compute(("job", gen, face, job.image, job.timestamp_ms, job.face_index, job.settings,
                                entry))
        if reply[0] != "answer":
            return None, reply[1], None
        out = reply[1]
        for v in out.values():  # (read-only, as Face.identity makes them: frames share them)
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
        return out, None, reply[2]

    def _after_failure(self, remote, exc: BaseException):
        """After a job the process could not answer: the same process object
        (it restarts on the next job), or None when the stage gives up on
        processes (it never became ready, or died :data:`MAX_STARTS` times)."""
        if self._closed:
            return remote
        if not isinstance(exc, W.WorkerGone):  # (a job or reply that cannot be pickled: counted as a failed job)
            return self._after_reply(remote, exc)
        if remote.pid is None or remote.starts_since_answer >= W.MAX_STARTS:
            self._give_up_process(str(exc))
            return None
        return remote

    def _after_reply(self, remote, err):
        """After the process replied: None (and the thread from now on) once
        :data:`MAX_FAILED_JOBS` replies in a row were errors (a child that
        cannot import what it needs, say), else ``remote``."""
        self._failed_in_row = self._failed_in_row + 1 if err is not None else 0
        if self._failed_in_row >= W.MAX_FAILED_JOBS and not self._closed:
            self._give_up_process(f"its last {self._failed_in_row} jobs failed: {type(err).__name__}: {err}")
            return None
        return remote

    def _give_up_process(self, why: str) -> None:
        with self._cond:
            remote, self._remote = self._remote, None
        self._want_process = False
        self.worker = f"thread (no worker process: {why})"
        if remote is not None:
            remote.close()
        import logging

        logging.getLogger("avatarizer").warning("identity worker: computing on a thread; %s", why)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until no answer is being computed (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def __repr__(self) -> str:
        return f"IdentityStage(worker={self.worker!r}, answers={self.answers})"

    # -- lifecycle
    def reset(self) -> None:
        """Drops a job not yet started and waits for one being computed (the
        pipeline has reset the stream first: its new generation drops that answer)."""
        with self._cond:
            if self._job is not None:  # not started: it never will be
                self._drop_queued_job()
                self._cond.notify_all()
            # a job on this process's networks is waited for; one in the worker process is not (its
            # answer, for the old generation, is dropped when it comes)
            self._cond.wait_for(lambda: not self._busy or self._in_process)

    def stop_at_exit(self, deadline: float) -> None:
        """At the interpreter's exit (:func:`avatarizer.api._stop_streams_at_exit`):
        the worker takes no new job and its job in flight is waited for until
        ``deadline`` (``time.monotonic()``), when it leaves its loop; the
        networks are not let go of (the process is ending). Its thread,
        stopped by the interpreter's end inside ONNX Runtime or MediaPipe,
        aborted the process (``identity_worker="thread"``: 3 of 51 runs; a
        review, session 71). Frames after it compute their identity
        refreshes themselves (as ``identity_worker="inline"``)."""
        with self._cond:
            self._closed = True
            if self._job is not None:  # (handed over, not taken: the stage is free again, its CPU given back;
                # left busy, a reset() in a later exit handler waited for the worker for good)
                self._drop_queued_job()
            thread = self._thread
            # the frames of a later exit handler compute their refreshes themselves, as identity_worker="inline"
            # does (the worker is gone: the identity stayed the warm-up's)
            self._inline = True
            self._cond.notify_all()
        if thread is None or thread is threading.current_thread():
            return
        # (a job in the worker process: the thread only waits on its pipe, where the interpreter's end stops it
        # harmlessly; waited for, a slow or stopped process held the exit up to the deadline)
        while thread.is_alive() and not self._in_process and time.monotonic() < deadline:
            thread.join(0.05)

    def close(self) -> None:
        """Stops the worker and lets go of the networks. Called on the worker
        thread itself (an Avatarizer dropped in a reference cycle is
        finalized by whichever thread the garbage collector runs on, and the
        worker allocates most while it computes, holding the networks' lock)
        it only marks the stage closed: the worker lets go of the networks
        when it is back in its loop (closing them there deadlocked the worker
        on its own lock, and the graphs and sessions were never let go of)."""
        with self._cond:
            self._closed = True
            self._job = None
            thread = self._thread
            here = thread is threading.current_thread()
            self._close_here = self._close_here or here  # (sticky: the worker reads it when back in its loop)
            self._cond.notify_all()
        if here:
            return
        with self._cond:
            remote = self._remote
        if remote is not None:  # (ends the process: a worker waiting for its answer sees the pipe close)
            remote.close()
        if thread is not None:
            thread.join()
        if not self._close_here:  # (else the worker let go of them: closed on it first)
            self._close_networks()

    def _close_networks(self) -> None:
        if self.cores is not None:  # (its CPU back to CoreSplit.plan, and any pins of a job dropped)
            self.cores.release()
        remote = self._remote
        if remote is not None:
            remote.close()
        with self._compute_lock:
            self.hair.close()
            self.face.close()
            if self._segmenter is not None:
                self._segmenter.close()
