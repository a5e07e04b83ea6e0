"""The identity worker as a process of its own (issue #16).

:class:`~avatarizer.pipeline.identity.IdentityStage` hands a copy of a frame's
face to a worker every ``TrackerOptions.identity_every_ms``. Run on a thread
of the app's process, the worker's networks are mostly Python and numpy
holding the GIL, so every frame that overlaps a job waits for it: frames at a
camera's 30 fps on 2 cores had p99/p50 1.8 with that thread against 1.2
without refreshes (session 24, scratch ``paced.py``); a process doing the
same amount of work beside the frames (10 ms every 200 ms) left them at
1.1-1.5 whatever its priority. So the worker runs in a child process:

* started with :data:`sys.executable` (``-c``, this package's folder first on
  its path; not :mod:`multiprocessing`, whose ``spawn`` runs the app's own
  main module again), on the stage's worker thread, so no frame waits for it
  to import and load its networks;
* it builds the same face and hair stages from the pipeline's
  :class:`~avatarizer.pipeline.config.Resolved` options (pickled), segments
  with its own MediaPipe graph and runs :data:`~.identity.WORKER_NICENESS`
  nice levels lower (the stage passes it), with one BLAS / OpenMP thread;
* per job it gets the aligned face (its landmarks and transform), a copy of
  the frame, the stream's hair-cache entry (the retrieval kept steady
  between refreshes) and the job's generation; it answers with the face's
  identity fields (:meth:`Face.identity`; ``glasses_cues``, which holds
  functions for the hair stage only, is left out) and the new cache entry,
  which the stage adopts only for the generation it was asked in;
* messages are pickles with an 8-byte length over the child's stdin and a
  duplicate of its stdout (its own stdout is pointed at its stderr, which is
  discarded, so a library printing cannot corrupt them).

When the child cannot be started, does not say it is ready within
:data:`START_TIMEOUT_S`, or dies :data:`MAX_STARTS` times, the stage computes
on its thread as before (``IdentityStage.worker`` says which runs and why).
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

#: how long the child may take to import, load its networks and say it is ready
START_TIMEOUT_S = 120.0
#: child processes started per stage before it gives up and computes on its thread
MAX_STARTS = 3
#: the most bytes one message may claim (a frame of 8K RGB is ~100 MB)
MAX_MESSAGE = 1 << 30

_HEADER = struct.Struct("<Q")


class WorkerGone(RuntimeError):
    """The worker process exited, or its pipe broke, before it answered."""


def send(fileobj, obj) -> None:
    """Writes one message (``obj`` pickled, or ``bytes`` already pickled)."""
    data = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fileobj.write(_HEADER.pack(len(data)))
    fileobj.write(data)
    fileobj.flush()


def recv(fileobj):
    """The next message, or raises :class:`WorkerGone` at the end of the stream."""
    head = fileobj.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise WorkerGone("the identity worker's pipe closed")
    (n,) = _HEADER.unpack(head)
    if n > MAX_MESSAGE:
        raise WorkerGone(f"the identity worker's pipe is out of step (a message of {n} bytes)")
    data = fileobj.read(n)
    if len(data) < n:
        raise WorkerGone("the identity worker's pipe closed in a message")
    return pickle.loads(data)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class OwnSegmenter:
    """Stands in for the aligner in a copied frame context: the aligner's
    options, its own selfie-segmentation graph (used by the worker only: its
    thread, or its process)."""

    def __init__(self, options):
        self.options = options
        self._graph = None

    def _segment(self, image: np.ndarray) -> np.ndarray:
        if self._graph is None:
            from mediapipe.python.solutions import selfie_segmentation

            from ..align import mediapipe_graph

            self._graph = mediapipe_graph(lambda: selfie_segmentation.SelfieSegmentation(model_selection=0))
        return self._graph.process(image).segmentation_mask

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


class ProcessWorker:
    """The parent's end: one child process computing identity jobs, one at a
    time, called from the stage's worker thread only (``close`` from any)."""

    def __init__(self, resolved, align_options, niceness: int = 0):
        # pickled here, so options that cannot cross to a process (an app's own
        # smoothing object, say) fail at once and the stage computes on its thread
        self._init = pickle.dumps(("init", resolved, align_options), protocol=pickle.HIGHEST_PROTOCOL)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # _proc: close() may run on another thread
        self._closed = False
        self._niceness = int(niceness)
        self.starts = 0
        self.pid: int | None = None

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the avatarizer package
        code = ("import sys; sys.path.insert(0, " + repr(root) + "); "
                "from avatarizer.pipeline.identity_worker import child_main; child_main()")
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   AVATARIZER_WORKER_NICENESS=str(self._niceness))
        with self._lock:
            if self._closed:
                raise WorkerGone("closed")
            self.starts += 1
            self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                          close_fds=True)
            proc = self._proc
        timer = threading.Timer(START_TIMEOUT_S, self._kill, args=(proc,))
        timer.daemon = True
        timer.start()
        try:
            send(proc.stdin, self._init)
            reply = recv(proc.stdout)
        except (OSError, ValueError, WorkerGone, pickle.UnpicklingError, EOFError) as exc:
            self._kill(proc)
            raise WorkerGone(f"the identity worker process did not start ({self._status(proc)}): {exc}") from None
        finally:
            timer.cancel()
        if reply[0] != "ready":
            self._kill(proc)
            raise WorkerGone(f"the identity worker process could not load the networks: {reply[1]}")
        self.pid = proc.pid

    @staticmethod
    def _status(proc) -> str:
        try:
            rc = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {rc}"

    @staticmethod
    def _kill(proc) -> None:
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
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)  # (a job that cannot be pickled: raised as is)
        try:
            send(proc.stdin, data)
            return recv(proc.stdout)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            self._discard(proc)
            raise WorkerGone(f"the identity worker process broke off ({self._status(proc)}): {exc}") from None
        except WorkerGone as exc:
            self._discard(proc)
            raise WorkerGone(f"{exc} ({self._status(proc)})") from None

    def _discard(self, proc) -> None:
        self._kill(proc)
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
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
        A worker thread waiting for its answer then sees the pipe close."""
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
        try:
            proc.stdout.close()
        except OSError:
            pass


def _child_setup() -> tuple:
    """The child's channel: its stdin, and a duplicate of its stdout (fd 1
    then points at stderr, so stray prints cannot corrupt messages)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is for the app, which closes us
    except (ValueError, OSError):
        pass
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    niceness = int(os.environ.get("AVATARIZER_WORKER_NICENESS", "0") or 0)
    if niceness > 0 and hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:
            pass
    return sys.stdin.buffer, out


def child_main() -> None:
    """The worker process: ``("init", resolved, align options)`` first, then
    jobs ``("job", generation, aligned face, image, timestamp ms, face index,
    settings, hair entry)`` until its stdin closes."""
    rfile, wfile = _child_setup()
    try:
        _, resolved, align_options = recv(rfile)
        from .base import one_blas_thread
        from .face import FaceStage, resolve_estimator
        from .hair import HairStage
        from .state import Face, FrameState, StreamState
        from ..align import _FrameContext

        estimator, _ = resolve_estimator(resolved, resolved.manifest)
        face, hair = FaceStage(estimator), HairStage()
        face.prepare(resolved)
        hair.prepare(resolved)
        segmenter = OwnSegmenter(align_options)
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
                aligned._context = _FrameContext(image, segmenter)
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
