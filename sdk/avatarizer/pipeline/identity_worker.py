"""The identity worker as a process of its own (issue #16).

:class:`~avatarizer.pipeline.identity.IdentityStage` hands a copy of a frame's
face to a worker every ``TrackerOptions.identity_every_ms``. Run on a thread
of the app's process, the worker's networks are mostly Python and numpy
holding the GIL, so every frame that overlaps a job waits for it: frames at a
camera's 30 fps on 2 cores had p99/p50 1.8 with that thread against 1.2
without refreshes (session 24, scratch ``paced.py``); a process doing the
same amount of work beside the frames (10 ms every 200 ms) left them at
1.1-1.5 whatever its priority. So the worker runs in a child process:

* started with :data:`sys.executable` and this interpreter's flags (``-c``,
  with this process's ``sys.path``; not :mod:`multiprocessing`, whose
  ``spawn`` runs the app's own main module again), on the stage's worker
  thread, so no frame waits for it to import and load its networks; it
  first writes :data:`HELLO` (within :data:`HELLO_TIMEOUT_S`: a
  ``sys.executable`` that is the app itself, not a Python, is caught there),
  then loads and says it is ready (within :data:`START_TIMEOUT_S`). Not
  tried at all for a frozen app (``sys.frozen``), an empty
  ``sys.executable``, or networks on a GPU (a second process would hold a
  second copy of them in its memory);
* it builds the same face and hair stages from the pipeline's
  :class:`~avatarizer.pipeline.config.Resolved` options (pickled), finds the
  job's face again as image mode does and segments with its own MediaPipe
  graphs (:class:`OwnSegmenter`) and runs :data:`~.identity.WORKER_NICENESS`
  nice levels lower (the stage passes it; on Windows below normal priority),
  with one BLAS / OpenMP thread;
* per job it gets the aligned face (its landmarks and transform), a copy of
  the frame, the stream's hair-cache entry (the retrieval kept steady
  between refreshes) and the job's generation; it answers with the face's
  identity fields (:meth:`Face.identity`; ``glasses_cues``, which holds
  functions for the hair stage only, is left out) and the new cache entry,
  which the stage adopts only for the generation it was asked in;
* messages are pickles (protocol 5, arrays' bytes out of band: written
  straight from the array, so a large frame does not hold the GIL while it
  is pickled) over the child's stdin and a duplicate of its stdout, made
  before anything is imported (fd 1 then points at its stderr, which is
  discarded, so a library printing cannot corrupt them; what ``site``
  prints before that is skipped up to :data:`HELLO`).

When the child cannot be started, says nothing or is not ready in time, dies
:data:`MAX_STARTS` times without an answer in between, or fails
:data:`MAX_FAILED_JOBS` jobs in a row, the stage computes on its thread as
before (``IdentityStage.worker`` says which runs and why).
"""
from __future__ import annotations

import copy
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np

#: how long the child may take to start Python and say :data:`HELLO`
HELLO_TIMEOUT_S = 20.0
#: how long the child may take to import, load its networks and say it is ready
START_TIMEOUT_S = 120.0
#: how long the child may take to answer one job (0.05-0.3 s on 2 cores, seconds when starved): a
#: child stopped or hung (SIGSTOP, a deadlock) is killed after it and started again, as one that died
#: (without it the stage waited for it for good, and no identity refresh came, without a word)
JOB_TIMEOUT_S = 30.0
#: child processes started without an answer in between before the stage computes on its thread
MAX_STARTS = 3
#: jobs in a row the child answers with an error before the stage computes on its thread
MAX_FAILED_JOBS = 3
#: the most bytes one message may claim (a frame of 8K RGB is ~100 MB)
MAX_MESSAGE = 1 << 30
#: the child's first words, before it imports anything
HELLO = b"avatarizer identity worker 1\n"

_HEADER = struct.Struct("<QI")   # pickle bytes, out-of-band buffers
_LENGTH = struct.Struct("<Q")


class WorkerGone(RuntimeError):
    """The worker process exited, or its pipe broke, before it answered."""


class Encoded:
    """One message ready to send: header, pickle and out-of-band buffers."""

    __slots__ = ("head", "data", "raws")

    def __init__(self, obj):
        buffers: list = []
        self.data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        self.raws = [b.raw() for b in buffers]  # arrays' bytes (protocol 5): not copied into the pickle
        self.head = _HEADER.pack(len(self.data), len(self.raws)) + b"".join(_LENGTH.pack(r.nbytes)
                                                                             for r in self.raws)


def send(fileobj, message) -> None:
    """Writes one message: an object, or an :class:`Encoded` one."""
    m = message if isinstance(message, Encoded) else Encoded(message)
    head, data, raws = m.head, m.data, m.raws
    fileobj.write(head)
    fileobj.write(data)
    for r in raws:
        fileobj.write(r)  # (a large buffer goes straight to the pipe; the GIL is let go while it waits)
    fileobj.flush()


def _read_exactly(fileobj, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = fileobj.readinto(view[got:])
        if not k:
            raise WorkerGone("the identity worker's pipe closed in a message")
        got += k
    return buf


def recv(fileobj):
    """The next message, or raises :class:`WorkerGone` at the end of the stream."""
    head = fileobj.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise WorkerGone("the identity worker's pipe closed")
    n, k = _HEADER.unpack(head)
    if k > 4096:
        raise WorkerGone(f"the identity worker's pipe is out of step (a message of {k} buffers)")
    lengths = [_LENGTH.unpack(_read_exactly(fileobj, _LENGTH.size))[0] for _ in range(k)]
    if n + sum(lengths) > MAX_MESSAGE:
        raise WorkerGone(f"the identity worker's pipe is out of step (a message of {n + sum(lengths)} bytes)")
    data = _read_exactly(fileobj, n)
    buffers = [_read_exactly(fileobj, m) for m in lengths]
    return pickle.loads(data, buffers=buffers)


def _await_hello(fileobj) -> None:
    """Reads up to :data:`HELLO` (skipping what ``site`` may have printed first)."""
    seen = b""
    while not seen.endswith(HELLO):
        line = fileobj.readline(len(HELLO) + 4096)
        if not line:
            raise WorkerGone("it exited before saying hello")
        seen = (seen + line)[-len(HELLO):]


def cannot_start() -> str | None:
    """Why no worker process can be started here, or None."""
    if getattr(sys, "frozen", False):
        return "a frozen application (sys.frozen): sys.executable is the application, not a Python"
    exe = sys.executable
    if not exe:
        return "sys.executable is empty (an embedded Python)"
    if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
        return f"sys.executable ({exe!r:.200}) is not an executable file"
    if not _PYTHON_NAME.match(os.path.basename(exe)):  # (an app embedding Python: run with -c, it is the app)
        return f"sys.executable ({exe!r:.200}) is not named as a Python interpreter (python*, pypy*)"
    return None


#: what a Python interpreter's file is called (python, python3.11, python.exe, pythonw, pypy3, ...)
_PYTHON_NAME = re.compile(r"^(python|pypy)[\w.\-]*$", re.IGNORECASE)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class OwnSegmenter:
    """Stands in for the aligner in a copied frame context (used by the
    worker only: its thread, or its process): the stream aligner's options,
    its own selfie-segmentation graph, and its own image-mode face mesh,
    with which :meth:`still` finds the job's face again as a photo's.

    Video mode's tracked landmarks are not image mode's: FaceMesh fits a
    tracked face in the box of the last frame's fit, not the detector's, and
    the fit drifts; on the shared clips the forehead's top (landmark 10,
    canonical y) read higher than on the same frames aligned as photos (the
    median of every 15th frame 0.004-0.056 of the canonical frame higher per
    clip, a tenth of d10's frames over 0.08; on a still photo repeated, 0.05
    within four frames), the face oval larger, the hair region under it
    smaller, and d6's short hair was drawn as a buzz cut for 15 of 34
    refreshes (session 67, scratch ``fam.py``, ``iou.py``).
    Every measure of the identity (the artist, the hair's silhouette, the
    attribute networks' crop) was fitted and checked on photos, so a
    refresh reads its frame as one (:meth:`still`); the frames keep their
    tracked landmarks for the expressions and the pose."""

    def __init__(self, options):
        self.options = options
        self._aligner = None  # the image-mode FaceAligner (made on first use): mesh and segmentation

    def _own(self):
        if self._aligner is None:
            import dataclasses

            from ..align import IMAGE_MESH_FACES, FaceAligner

            self._aligner = FaceAligner(dataclasses.replace(
                self.options, mode="image", max_faces=IMAGE_MESH_FACES, prefetch_segmentation=False))
        return self._aligner

    def prepare(self) -> None:
        """Makes the graphs now (MediaPipe's import, ~0.3 s in a new process)
        rather than on the first job that needs them."""
        own = self._own()
        if self.options.segmentation:
            own._segment(np.zeros((8, 8, 3), np.uint8))

    def _segment(self, image: np.ndarray) -> np.ndarray:
        return self._own()._segment(image)

    def still(self, aligned, image: np.ndarray):
        """The face ``aligned`` (found in ``image``, a frame's RGB pixels) as
        image mode finds it in ``image``: the face whose landmarks' box
        overlaps its box the most (intersection over union at least
        :data:`STILL_MIN_IOU`), with its crops and masks made here; else
        (image mode finds no such face: a turned head it tracked, say) a copy
        of ``aligned`` whose masks are made here. A stream aligner in image
        mode: that copy, as before."""
        from ..align import _FrameContext

        if self.options.mode == "video":
            best, most = None, STILL_MIN_IOU
            own = self._own()
            for face in own.faces_found(own.find(image), small_faces=False):
                iou = box_iou(face.box, aligned.box)
                if iou >= most:
                    best, most = face, iou
            if best is not None:
                return best
        mine = copy.copy(aligned)
        mine._cache = {}
        mine._context = _FrameContext(image, self)
        return mine

    def close(self) -> None:
        if self._aligner is not None:
            self._aligner.close()
            self._aligner = None


#: how much of the union of the two boxes a face image mode finds in a
#: refresh's frame must share with the tracked face's for :meth:`OwnSegmenter.still`
#: to take it for the same face (the same face's two fits: 0.87-0.99 on every
#: 15th frame of the shared clips, median 0.94-0.99 per clip)
STILL_MIN_IOU = 0.5


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 for empty ones)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class ProcessWorker:
    """The parent's end: one child process computing identity jobs, one at a
    time, called from the stage's worker thread only (``close`` from any)."""

    def __init__(self, resolved, align_options, niceness: int = 0, cpu: int | None = None):
        # pickled here, so options that cannot cross to a process (an app's own
        # smoothing object, say) fail at once and the stage computes on its thread
        self._init = Encoded(("init", resolved, align_options))
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # _proc: close() may run on another thread
        self._closed = False
        self._niceness = int(niceness)
        self.cpu = None if cpu is None else int(cpu)  # the CPU the child runs on (pipeline.cores), or any
        self.starts = 0                # children started in all
        self.starts_since_answer = 0   # children started since the last reply (MAX_STARTS)
        self.pid: int | None = None    # the child that last said it was ready
        _WORKERS.add(self)

    def _command(self) -> list:
        path = [p for p in sys.path if isinstance(p, str)]
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the avatarizer package
        if root not in path:
            path.append(root)
        flags = getattr(subprocess, "_args_from_interpreter_flags", lambda: [])()  # -X, -W, -O, -s, -E, -I ...
        # this process's path as a literal, set before anything is imported (``-c`` puts the working
        # folder first: a json.py there was imported by the child, not by the app)
        code = ("import sys\n"
                f"sys.path[:] = {ascii(path)}\n"  # (ascii: the command line of any locale can carry it)
                "import os\n"
                "out = os.fdopen(os.dup(1), 'wb'); os.dup2(2, 1)\n"  # our channel; stray prints to stderr
                f"out.write({HELLO!r}); out.flush()\n"
                "from avatarizer.pipeline.identity_worker import child_main\n"
                "child_main(out)\n")
        return [sys.executable, *flags, "-c", code]

    def _start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   AVATARIZER_WORKER_NICE=str(worker_nice(self._niceness)),
                   AVATARIZER_WORKER_CPU="" if self.cpu is None else str(self.cpu))
        flags = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0) if os.name == "nt" else 0
        with self._lock:
            if self._closed:
                raise WorkerGone("closed")
            self.starts += 1
            self.starts_since_answer += 1
            try:
                self._proc = subprocess.Popen(self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, env=env, close_fds=True,
                                              creationflags=flags, start_new_session=os.name == "posix")
            except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
                raise WorkerGone(f"the identity worker process could not be started: {type(exc).__name__}: "
                                 f"{exc}") from None
            proc = self._proc
        stage = "saying hello"
        timer = self._kill_after(HELLO_TIMEOUT_S, proc)
        try:
            _await_hello(proc.stdout)
            timer.cancel()
            stage = "loading its networks"
            timer = self._kill_after(START_TIMEOUT_S, proc)
            send(proc.stdin, self._init)
            reply = recv(proc.stdout)
        except (OSError, ValueError, WorkerGone, pickle.UnpicklingError, EOFError, AttributeError,
                ImportError, IndexError, TypeError) as exc:
            timer.cancel()
            status = self._status(proc, 0.2)  # (before the kill: how it ended, if it did)
            self._discard(proc)
            raise WorkerGone(f"the identity worker process did not start ({stage}; {status}): {exc}") from None
        timer.cancel()
        if not (isinstance(reply, tuple) and reply and reply[0] == "ready"):
            self._discard(proc)
            why = reply[1] if isinstance(reply, tuple) and len(reply) > 1 else repr(reply)[:200]
            raise WorkerGone(f"the identity worker process could not load the networks: {why}")
        self.pid = proc.pid

    @classmethod
    def _kill_after(cls, seconds: float, proc) -> threading.Timer:
        """A started timer that kills ``proc`` (:meth:`_kill`) after ``seconds``
        unless cancelled."""
        timer = threading.Timer(seconds, cls._kill, args=(proc,))
        timer.daemon = True
        timer.start()
        return timer

    @staticmethod
    def _status(proc, wait: float = 1.0) -> str:
        try:
            rc = proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {rc}"

    @staticmethod
    def _kill(proc) -> None:
        """Kills the child and, on POSIX, what it started (its own session:
        a grandchild holding the pipe would keep a read from ever ending);
        only the child once it has been reaped (its group's id could then
        name another group)."""
        try:
            if os.name == "posix" and proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:
            try:
                proc.kill()
            except OSError:
                pass

    def ensure_started(self) -> None:
        """Starts the child (and waits until it is ready) unless one is running;
        raises :class:`WorkerGone` when it cannot."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self._discard(proc)
            self._start()

    def compute(self, job: tuple):
        """``job`` (see :func:`child_main`) → ``("answer", identity, hair entry)``
        or ``("failed", exception)``; starts the child first if need be.
        Raises :class:`WorkerGone` when it cannot start or dies mid-job."""
        self.ensure_started()
        proc = self._proc
        if proc is None:
            raise WorkerGone("closed")
        message = Encoded(job)  # (a job that cannot be pickled: raised as is)
        start = time.monotonic()
        timer = self._kill_after(JOB_TIMEOUT_S, proc)
        try:
            send(proc.stdin, message)
            reply = recv(proc.stdout)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError, WorkerGone) as exc:
            timer.cancel()
            status = self._status(proc, 0.2)
            self._discard(proc)
            if time.monotonic() - start >= JOB_TIMEOUT_S:  # (the timer's kill ended it)
                raise WorkerGone(f"the identity worker process did not answer within {JOB_TIMEOUT_S:g} s "
                                 f"(stopped or hung; killed: {status})") from None
            if isinstance(exc, WorkerGone):
                raise WorkerGone(f"{exc} ({status})") from None
            raise WorkerGone(f"the identity worker process broke off ({status}): {exc}") from None
        timer.cancel()
        self.starts_since_answer = 0
        return reply

    def _discard(self, proc) -> None:
        self._kill(proc)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        with self._lock:
            if self._proc is proc:
                self._proc = None

    def close(self) -> None:
        """Ends the child (any thread): its stdin closed, so it leaves its loop;
        killed if it has not within a second (a job under way is dropped).
        A worker thread waiting for its answer then sees the pipe close. The
        kill is armed first: closing stdin waits for a write under way, which
        a child that does not read (stopped, hung) would never let end."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
        if proc is None:
            return
        timer = self._kill_after(1.0, proc)
        try:
            try:
                proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                proc.wait(timeout=6.0)  # (the timer kills it after a second)
            except subprocess.TimeoutExpired:
                pass
        finally:
            timer.cancel()
        try:
            proc.stdout.close()
        except (OSError, ValueError):
            pass


#: every :class:`ProcessWorker` of this process (:func:`_forget_workers_in_child`)
_WORKERS: "weakref.WeakSet[ProcessWorker]" = weakref.WeakSet()


def _forget_workers_in_child() -> None:
    """After ``os.fork()``, in the forked child: its copies of the pipes to
    each worker process point at ``/dev/null`` and the worker is forgotten
    (never written to, waited for or killed from here: it is the parent's).
    The copies kept the worker's stdin open, so it outlived its app by as
    long as a forked child lived (re-parented to init, its networks loaded),
    and the app's ``close()`` waited a second for its kill instead of its
    exit."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        null = None
    for worker in list(_WORKERS):
        proc, worker._proc = worker._proc, None
        worker._closed = True
        worker._lock = threading.Lock()  # (one another thread held at the fork stays held here)
        for f in () if proc is None else (proc.stdin, proc.stdout):
            try:
                fd = f.fileno()
                if null is not None:
                    os.dup2(null, fd)  # (the file objects' later close then closes /dev/null's copy)
                else:
                    os.close(fd)
            except (OSError, ValueError, AttributeError):
                pass
        if proc is not None:
            proc.returncode = 0  # (not this process's child: Popen's finaliser must not wait for it)
    if null is not None:
        os.close(null)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_in_child)


def _child_setup() -> None:
    """Ctrl-C ignored, the CPU and the niceness the parent asked for."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is for the app, which closes us
    except (ValueError, OSError):
        pass
    cpu = os.environ.get("AVATARIZER_WORKER_CPU", "")
    if cpu.isdigit():  # (before any thread is made: MediaPipe's and ONNX Runtime's inherit it)
        from .cores import pin_this_process

        pin_this_process(int(cpu))
    try:
        target = int(os.environ.get("AVATARIZER_WORKER_NICE", "") or "x")
    except ValueError:
        return
    if hasattr(os, "nice"):
        try:
            # (an absolute level: the child inherits the nice value of the thread that started it, the
            # stage's worker thread, itself lowered by WORKER_NICENESS; added again it ran at 19)
            if target > os.nice(0):
                os.nice(target - os.nice(0))
        except OSError:
            pass


def worker_nice(niceness: int) -> int:
    """The nice value of a worker process ``niceness`` levels below this
    process (its main thread's, not the calling thread's), at most 19; the
    process's own value where it cannot be read."""
    try:
        # (the process id names its main thread on Linux, where a thread has a nice value of its own: 0
        # would name the calling thread, the stage's worker thread, already lowered)
        own = os.getpriority(os.PRIO_PROCESS, os.getpid()) if hasattr(os, "getpriority") else 0
    except OSError:
        own = 0
    return min(19, own + max(0, int(niceness)))


def child_main(wfile) -> None:
    """The worker process (``wfile``: its channel to the parent, made by the
    ``-c`` code before any import): ``("init", resolved, align options)``
    first, then jobs ``("job", generation, aligned face, image, timestamp ms,
    face index, settings, hair entry)`` until its stdin closes."""
    _child_setup()
    rfile = sys.stdin.buffer
    try:
        _, resolved, align_options = recv(rfile)
        from .base import one_blas_thread
        from .face import FaceStage, resolve_estimator
        from .hair import HairStage
        from .state import Face, FrameState, StreamState

        estimator, _ = resolve_estimator(resolved, resolved.manifest)
        face, hair = FaceStage(estimator), HairStage()
        face.prepare(resolved)
        hair.prepare(resolved)
        segmenter = OwnSegmenter(align_options)
        # (its import in the start-up, which no frame waits for, not in the first job that segments:
        # that job's time decides the worker's rest, and it was 0.3 s; the face mesh's graph too)
        segmenter.prepare()
        stream = StreamState(resolved.tracker, resolved.smoothing)
    except WorkerGone:
        return
    except Exception as exc:
        send(wfile, ("error", f"{type(exc).__name__}: {exc}"))
        return
    send(wfile, ("ready", os.getpid()))
    try:
        while True:
            try:
                _, gen, aligned, image, ts, face_index, settings, entry = recv(rfile)
            except WorkerGone:
                break
            try:
                aligned = segmenter.still(aligned, image)  # (the frame read as a photo: OwnSegmenter)
                stream.generation = gen
                stream.hair.clear()
                if entry is not None:
                    stream.hair[0] = entry
                job = FrameState(image=image, timestamp_ms=ts, face_index=face_index, settings=settings,
                                 generation=gen, faces=[Face(aligned)], all_faces=[aligned], stream=stream)
                with one_blas_thread():
                    face.run(job)
                    hair.run(job)
                out = job.faces[0].identity()
                out["glasses_cues"] = None  # (functions the hair stage used; nothing after it reads them)
                reply = ("answer", out, stream.hair.get(0))
            except Exception as exc:
                reply = ("failed", _portable(exc))
            send(wfile, reply)
    except (OSError, ValueError):  # the parent is gone
        pass
    finally:
        segmenter.close()
        hair.close()
        face.close()
