"""Stage 1, align: MediaPipe face mesh → :class:`avatarizer.align.AlignedFace` per face.

MediaPipe's graphs are not re-entrant. In image mode the stage keeps one
:class:`~avatarizer.align.FaceAligner` per calling thread (the OpenSeeFace
pattern: one session per worker), so threads run in parallel and every thread
gets the same results as a serial caller; the aligners of threads that have
ended are closed when the next one is made (use a thread pool, not a thread
per call). In video mode there is one aligner
(its tracking state belongs to one stream); the caller serialises frames.
"""
from __future__ import annotations

import threading

from ..align import AlignOptions, FaceAligner, box_area
from .base import Stage
from .state import Face, FrameState



#: video mode: the face that continues the tracked one stays the chosen one
#: (``face_index``, by size) while it and the face of that rank are within this
#: factor of each other's area
STICKY_AREA = 1.3


def continuing(faces, box):
    """The face of ``faces`` (AlignedFace) that continues the tracked face
    whose last box was ``box`` (x0, y0, x1, y1): the one whose box centre is
    nearest that box's, within half that box's larger side; None without
    one (or without a box)."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    cx, cy, reach = 0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * max(x1 - x0, y1 - y0)
    best, dist = None, reach
    for f in faces:
        bx0, by0, bx1, by1 = f.box
        d = ((0.5 * (bx0 + bx1) - cx) ** 2 + (0.5 * (by0 + by1) - cy) ** 2) ** 0.5
        if d <= dist:
            best, dist = f, d
    return best

class AlignStage(Stage):
    """Finds the faces: ``state.all_faces`` (every AlignedFace) and ``state.faces``
    (a :class:`~avatarizer.pipeline.state.Face` result per chosen face)."""

    name = "align"

    def __init__(self):
        self._local = threading.local()
        self._all: list[FaceAligner] = []
        self._owners: list[tuple[threading.Thread, FaceAligner]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.align_options: AlignOptions | None = None

    def prepare(self, options) -> None:
        super().prepare(options)
        from ..video import FRAME_GAP_MS

        # (a gap without frames after which the tracker starts a new track starts MediaPipe's tracking afresh
        # too: longer than its reset_ms and than a frame interval, Tracker.absent_ms)
        self.align_options = AlignOptions(mode=options.mode, max_faces=options.max_faces, segmentation=True,
                                          prefetch_segmentation=options.mode == "image",
                                          restart_after_ms=max(float(options.tracker.reset_ms), FRAME_GAP_MS))
        self.align_options.validate()
        self.aligner()  # create the first one now: errors surface at construction

    def aligner(self) -> FaceAligner:
        """The calling thread's aligner (the shared one in video mode)."""
        if self.align_options.mode == "video":
            if not self._all:
                with self._lock:
                    self._check_open()
                    if not self._all:
                        self._all.append(FaceAligner(self.align_options))
            return self._all[0]
        al = getattr(self._local, "aligner", None)
        if al is None:
            with self._lock:
                self._check_open()
                self._sweep()
                al = FaceAligner(self.align_options)
                self._all.append(al)
                self._owners.append((threading.current_thread(), al))
            self._local.aligner = al
        return al

    def _sweep(self) -> None:
        """Closes the aligners of threads that have ended (short-lived threads
        would otherwise leave MediaPipe graphs behind). Called with the lock held."""
        alive = []
        for thread, al in self._owners:
            if thread.is_alive():
                alive.append((thread, al))
            else:
                al.close()
                self._all.remove(al)
        self._owners = alive

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("This Avatarizer is closed; create a new one.")

    def ahead(self, state: FrameState) -> None:
        """The landmarks alone (:meth:`FaceAligner.find`), kept in
        ``state.info["found"]`` for :meth:`run`: what a stream's read-ahead
        thread does for the next frame (:meth:`Pipeline.ahead`)."""
        with state.timer(self.name):
            state.info["found"] = self.aligner().find(state.image, timestamp_ms=state.timestamp_ms,
                                                      color_order="rgb")

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            aligner = self.aligner()
            found = state.info.pop("found", None)
            if found is None:
                found = aligner.find(state.image, timestamp_ms=state.timestamp_ms, color_order="rgb")
            # (image mode: as many faces as the call takes, the small-face search where FaceMesh found fewer)
            faces = aligner.faces_found(found, aligner.options.max_faces if state.face_index is None
                                        else state.face_index + 1)
        state.all_faces = faces
        if state.face_index is None:
            chosen = list(faces)
        else:
            chosen = [faces[state.face_index]] if state.face_index < len(faces) else []
            stream = state.stream
            if stream is not None and chosen and len(faces) > 1:
                # video: the face that continues the tracked one keeps its place while it and the face of that
                # rank are within STICKY_AREA times each other's area (two people of about one size took it in
                # turn: the tracked person changed 16-20 times in 10 s, their identities blended); not a face
                # grown far past that rank (face_index 1 kept a face 5 times the other's: both indices gave
                # it), nor the box of another index's track or a track the frame does not continue
                box = stream.track_box_for(state.timestamp_ms, state.face_index, state.image.shape)
                same = continuing(faces, box) if box is not None else None
                if same is not None and same is not chosen[0] and \
                        box_area(same.box) * STICKY_AREA >= box_area(chosen[0].box) and \
                        box_area(chosen[0].box) * STICKY_AREA >= box_area(same.box):
                    chosen = [same]
            if stream is not None:
                stream.track_box = tuple(chosen[0].box) if chosen else stream.track_box
        state.faces = [Face(a) for a in chosen]

    def _video_aligners(self) -> list[FaceAligner]:
        with self._lock:
            return list(self._all) if self.align_options.mode == "video" else []

    def reset(self) -> None:
        """Video mode: the stream's aligner starts over (fresh tracking, timestamps from any value)."""
        for al in self._video_aligners():
            al.reset()

    def rewind_clock(self, timestamp_ms: float | None) -> None:
        """Video mode: see :meth:`avatarizer.pipeline.Pipeline.rewind_clock`."""
        for al in self._video_aligners():
            al.rewind_clock(timestamp_ms)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            aligners, self._all, self._owners = self._all, [], []
        for al in aligners:
            al.close()
