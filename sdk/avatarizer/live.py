"""``avatarizer live``: a preview window on a camera or any video source.

The frames come from OpenCV (``cv2.VideoCapture``: a camera index, a video
file or a URL), go through :class:`avatarizer.Avatarizer` in video mode (one
tracked face) and are shown with OpenCV's highgui (``cv2.imshow``), the avatar
over the face or beside the frame, with the measured frame rate drawn on it.

Timestamps: a file's frames are stamped by frame index / its frame rate and
shown no faster than that rate (a preview plays at the source's speed, and
one that fell behind does not race to catch up); a
camera's or a stream's by the monotonic clock when the frame was read (the
camera paces itself). The fps drawn on the frame is the rate at which frames
were shown over the last second or so.

Windows need a display. Qt (OpenCV's window toolkit in the opencv-python
wheels) aborts the whole process when it cannot reach one, so
:func:`display_problem` checks first, in a child process, and the command
says how to fix it (``xvfb-run -a`` on a machine without a screen).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

#: Exit status when no window can be opened (no display).
EXIT_NO_DISPLAY = 2
WINDOW = "avatarizer live (q or Esc quits)"
_QUIT_KEYS = (ord("q"), ord("Q"), 27)


#: The largest camera index (OpenCV takes a C int: a larger one raised a cv2.error traceback)
MAX_CAMERA_INDEX = 2 ** 31 - 1


def parse_source(text: str | None) -> int | str:
    """``None`` or ASCII digits → a camera index (int, at most
    :data:`MAX_CAMERA_INDEX`); a ``file:`` URL → its local path (checked as
    any file: the screenshot must not replace it); anything else → a path
    or URL (str). ``ValueError`` for an empty source, an index beyond that
    ("²" counted as digits and ended in int()'s error) or a ``file:`` URL of
    another host."""
    if text is None:
        return 0
    t = text.strip()
    if not t:
        raise ValueError("the source is empty: give a camera index, a video file or a URL")
    if t.isascii() and t.isdigit():
        if int(t) > MAX_CAMERA_INDEX:
            raise ValueError(f"camera index {t} is too large (at most {MAX_CAMERA_INDEX})")
        return int(t)
    if t[:5].lower() == "file:":
        from urllib.parse import unquote, urlsplit
        from urllib.request import url2pathname

        u = urlsplit(t)
        if u.netloc not in ("", "localhost"):
            raise ValueError(f"{text}: a file URL of another host; give a local file, a camera or a stream URL")
        return url2pathname(unquote(u.path)) if os.name == "nt" else unquote(u.path)
    return text


def describe(source: int | str) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


#: the character-device major number of Video4Linux (``/dev/video*``)
V4L_MAJOR = 81


def is_camera_device(source: int | str) -> bool:
    """A camera's device node (``/dev/video0``): on Linux a Video4Linux
    character device, elsewhere any character device. A terminal
    (``/dev/tty``), ``/dev/null`` and the like are not (FFmpeg probing
    ``/dev/tty`` blocked in the read, deaf to Ctrl-C and SIGTERM)."""
    if isinstance(source, int) or "://" in source:
        return False
    try:
        st = os.stat(source)
    except OSError:
        return False
    if not stat.S_ISCHR(st.st_mode):
        return False
    return not sys.platform.startswith("linux") or os.major(st.st_rdev) == V4L_MAJOR


def is_stream(source: int | str) -> bool:
    """A camera (an index or a device such as ``/dev/video0``:
    :func:`is_camera_device`) or a network stream: frames arrive in real
    time. Otherwise a file."""
    if isinstance(source, int) or "://" in source:
        return True
    return is_camera_device(source)


#: how long a network stream (a URL) may take to open, and to send the next frame once playing (FFmpeg's
#: own defaults wait 30 s or more, and then the command could only say it "could not open" the stream)
URL_OPEN_TIMEOUT_S = 10.0
URL_READ_TIMEOUT_S = 5.0
#: a camera's or stream's failed reads are retried (a dropped frame) up to 10 times, and for no longer
#: than this since its last frame (each read of a stalled camera may itself wait seconds)
READ_GIVE_UP_S = 5.0
#: how long a preview that was quit waits, its window closed, for a read of the source still in progress
#: (the caller then releases the capture: never under a read)
READER_WAIT_S = 30.0


class SourceError(RuntimeError):
    """A source that cannot be opened; the message says which and why."""


def open_url(url: str, open_timeout: float | None = None, read_timeout: float | None = None):
    """``cv2.VideoCapture`` of a network stream (``url`` holds ``://``)
    through FFmpeg with :data:`URL_OPEN_TIMEOUT_S` to open it and
    :data:`URL_READ_TIMEOUT_S` for each later frame (a stream that stalls
    then ends as a read error). :class:`SourceError` when it does not open:
    "did not answer within N s" where the time ran out (a host that is
    down, a firewall that drops the packets, a camera that is off), else a
    stream nothing can read (a refused connection, an unknown protocol, not
    a video). Where FFmpeg refuses it at once, or this OpenCV has no
    FFmpeg, OpenCV's other backends are tried as before, without timeouts
    (a GStreamer pipeline holds ``://`` too)."""
    import cv2

    open_timeout = URL_OPEN_TIMEOUT_S if open_timeout is None else float(open_timeout)
    read_timeout = URL_READ_TIMEOUT_S if read_timeout is None else float(read_timeout)
    if _has_ffmpeg():
        t0 = time.monotonic()
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
                                                     cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)])
        if cap.isOpened():
            return cap
        waited = time.monotonic() - t0
        cap.release()
        if waited >= 0.9 * open_timeout:
            raise SourceError(f"{url} did not answer within {open_timeout:g} s (a host that is down or "
                              "unreachable, a firewall, a camera that is off)")
    # FFmpeg refused it at once (or this OpenCV has no FFmpeg): the other backends that read streams, as
    # before (a GStreamer pipeline, a protocol another backend reads), without the timeouts
    for api in _other_stream_backends():
        cap = cv2.VideoCapture(url, api)
        if cap.isOpened():
            return cap
        cap.release()
    raise SourceError(f"could not open {url} (refused, not found, or a protocol or codec this OpenCV "
                      "build cannot read)")


def _other_stream_backends() -> list[int]:
    """OpenCV's stream backends of this build but FFmpeg (none: the opencv-python wheels read streams
    through FFmpeg alone); ``[cv2.CAP_ANY]`` where the registry cannot say."""
    import cv2

    try:
        return [b for b in cv2.videoio_registry.getStreamBackends() if b != cv2.CAP_FFMPEG]
    except (AttributeError, cv2.error):
        return [cv2.CAP_ANY]


def _has_ffmpeg() -> bool:
    """Whether this OpenCV build reads video through FFmpeg (the timeouts are FFmpeg's)."""
    import cv2

    try:
        return bool(cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG))
    except (AttributeError, cv2.error):
        return True  # (an OpenCV without the registry: try it)


_PROBE = ("import sys, cv2\n"
          "try:\n"
          "    cv2.namedWindow('avatarizer-probe', cv2.WINDOW_AUTOSIZE)\n"
          "    cv2.waitKey(1)\n"
          "    cv2.destroyAllWindows()\n"
          "except cv2.error as exc:\n"
          "    sys.exit('opencv: ' + str(exc).strip().splitlines()[-1])\n")


def display_problem(timeout: float = 60.0) -> str | None:
    """Why no preview window can be opened here, as one sentence with the fix;
    ``None`` when one can. On Linux and other X11 systems ``$DISPLAY`` must be
    set (or ``QT_QPA_PLATFORM`` name another Qt platform), and a window is
    opened and closed in a child process first: Qt aborts the process that
    cannot reach its display, and that must not be this one."""
    hint = ("run it in a desktop session (or over ssh -X), or on a machine without a screen under a "
            "virtual X server: xvfb-run -a avatarizer live ... (Debian/Ubuntu: apt-get install xvfb)")
    native = sys.platform in ("win32", "darwin")
    if not native and not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        return f"no display to open the preview window on ($DISPLAY is not set); {hint}"
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"opening a test window took more than {timeout:.0f} s; {hint}"
    except OSError as exc:
        return f"could not test for a display ({exc}); {hint}"
    if res.returncode == 0:
        return None
    lines = [ln.strip() for ln in (res.stderr or "").splitlines() if ln.strip()]
    why = next((ln for ln in lines if "opencv:" in ln or "display" in ln.lower()), lines[-1] if lines else "")
    where = f" {os.environ['DISPLAY']}" if os.environ.get("DISPLAY") else ""
    if "opencv:" in why and "not implemented" in why.lower():
        return ("this OpenCV has no window support (opencv-python-headless?); install opencv-python or "
                "opencv-contrib-python")
    return f"cannot open a window on the display{where} ({why or f'exit status {res.returncode}'}); {hint}"


class FpsMeter:
    """Frames per second over a sliding window (the last ``span_s`` seconds,
    at most ``frames`` frames)."""

    def __init__(self, span_s: float = 1.0, frames: int = 60):
        self.span_s = float(span_s)
        self._t: deque = deque(maxlen=frames)

    def tick(self, t: float | None = None) -> float:
        t = time.perf_counter() if t is None else t
        self._t.append(t)
        while len(self._t) > 2 and t - self._t[0] > self.span_s:
            self._t.popleft()
        return self.fps

    @property
    def fps(self) -> float:
        if len(self._t) < 2:
            return 0.0
        dt = self._t[-1] - self._t[0]
        return (len(self._t) - 1) / dt if dt > 0 else 0.0


def draw_label(frame: np.ndarray, text: str) -> np.ndarray:
    """``text`` in the top-left corner, white with a dark outline (legible on
    any background), sized to the frame's height. Draws in place."""
    import cv2

    h = frame.shape[0]
    scale = max(0.5, h / 480.0 * 0.8)
    thick = max(1, int(round(scale * 2)))
    (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    org = (int(10 * scale), int(10 * scale) + th)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


@dataclass
class LiveResult:
    shown: int = 0              # frames shown
    found: int = 0              # frames with a fresh (not stale) avatar
    seconds: float = 0.0        # from the start of the loop (models loaded) to its end
    fps: float = 0.0            # shown / seconds
    last: np.ndarray | None = None  # the last frame shown (BGR, with the fps label)
    stopped_by: str = "end"     # "end" (source ended), "key", "window", "frames", "max-seconds", "read-error"
    #                             (a camera or stream that stopped sending frames: a URL's after URL_READ_TIMEOUT_S)
    #: a file that ended before the frames its header announces (damaged or cut): that many, else None
    expected: int | None = None
    #: a file's frames that could not be decoded mid-file (the walk went on after them)
    damaged: int = 0


def run(av, cap, source: int | str, *, side: bool, face: int = 0, max_frames: int | None = None,
        max_seconds: float | None = None, window: str = WINDOW) -> LiveResult:
    """The preview loop: reads ``cap``, shows each frame with the avatar of
    face ``face`` (``av`` is a video-mode :class:`avatarizer.Avatarizer` with
    ``color_order="bgr"``) until the source ends, q/Esc is pressed, the window
    is closed, or ``max_frames`` / ``max_seconds`` (wall clock) is reached.

    It runs :meth:`avatarizer.Avatarizer.stream`: the source is read and the
    next frame's landmarks found on its worker thread while this thread
    merges, draws and shows the current frame (highgui stays on this one).
    A new preview is a new stream: ``av`` is :meth:`~avatarizer.Avatarizer.reset`
    first (a second preview with the same Avatarizer restarted the clock
    and was refused for timestamps going back)."""
    import cv2

    av.reset()

    # a camera or a live stream: frames come in real time; a file, or a URL to a whole one (it has a frame
    # count: it played in fast-forward and its end was reported as a stream that stopped sending frames)
    stream = is_stream(source) and not ("://" in str(source) and (cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) > 0)
    fps_src = cap.get(cv2.CAP_PROP_FPS)
    if not fps_src or not np.isfinite(fps_src) or fps_src <= 0 or fps_src > 1000:
        fps_src = 30.0
    # a file's header: how long its last frame lasts (Probe.last_shown); None: no hold
    info = None if stream or "://" in str(source) else _probe(source)
    meter = FpsMeter()
    res = LiveResult()
    store: dict = {}                 # frame index -> the BGR frame read (for drawing)
    stamps: deque = deque()          # their timestamps, in step with the frames
    due: dict = {}                   # a file's frame index -> its time in the file (s): when it is shown
    ended = {"why": "end"}           # how the source stopped, if it did

    reading = threading.Event()  # the worker is inside cap.read()
    quitting = threading.Event()  # the preview ended: no further read is started

    file_frames = 0 if stream else int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    from .videoio import expected_frames, lost_frames, read_past_damage, read_whole

    def read():
        reading.set()  # (set before quitting is looked at: run's end sees one or the other)
        if quitting.is_set():  # (a retry after the preview ended: never a read the capture is released under)
            reading.clear()
            return False, None
        try:
            return cap.read()
        finally:
            reading.clear()

    def frames():  # runs on the stream's worker thread
        n, misses, last_ts, failed, first_ts = 0, 0, -1.0, 0, None
        got = time.perf_counter()
        while True:
            if stream:
                ok, frame = read()
            else:  # a file's damaged packet fails a read, and decoding goes on after it (as `video` walks it)
                ok, frame, skipped = read_past_damage(read, n + failed, file_frames)
                failed += skipped
            if quitting.is_set():
                return
            now = time.perf_counter()
            if not ok or frame is None:
                # a camera may drop a frame: retried, but not 10 times a stalled read's own timeout
                if stream and misses < 10 and n > 0 and now - got < READ_GIVE_UP_S:
                    misses += 1
                    continue
                ended["why"] = "end" if not stream else "read-error"
                return
            misses, got = 0, now
            if stream:
                ts = (now - t0) * 1000.0
            else:  # the frame's own time in the file (an animated image's frames last what each says)
                ts = cap.get(cv2.CAP_PROP_POS_MSEC)
                if not np.isfinite(ts) or ts < 0 or (n and ts <= last_ts):
                    ts = last_ts + 1000.0 / fps_src if n else 0.0
            last_ts = max(ts, last_ts + 1e-3)  # strictly increasing
            if not stream:  # (the frames lost: the failed reads that the frames' times skip)
                first_ts = last_ts if first_ts is None else first_ts
                res.damaged = lost_frames(failed, first_ts / 1000.0, last_ts / 1000.0, 1.0 / fps_src, n + 1)
            stamps.append(last_ts)
            due[n] = last_ts / 1000.0
            store[n] = frame
            n += 1
            yield frame

    def timestamps():
        while True:
            yield stamps.popleft()

    cv2.namedWindow(window, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
    t0 = time.perf_counter()
    why = None
    clock = None  # a file's: (the wall time its first frame was shown, that frame's time in the file)

    def wait_until(when: float) -> str | None:
        """Waits for ``when`` (perf_counter) with the window answering: q/Esc
        and closing it count while a file's frame lasts (a sleep ignored them
        for as long); ``max_seconds`` ends the wait. The reason to stop, or None."""
        while True:
            if max_seconds is not None:
                when = min(when, t0 + max_seconds)
            left = when - time.perf_counter()
            if left <= 0.012:  # the last moments slept (waitKey overshoots by a few ms), then the events once
                if left > 0:
                    time.sleep(left)
                key = cv2.waitKey(1) & 0xFF
            else:
                key = cv2.waitKey(min(50, int((left - 0.01) * 1000))) & 0xFF
            if key in _QUIT_KEYS:
                return "key"
            if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                return "window"
            if left <= 0.012:
                return None

    def waiting() -> bool:
        """While no frame is ready (a camera that stalls): the window's events,
        so q, Esc, closing it and ``max_seconds`` end the preview at once."""
        nonlocal why
        key = cv2.waitKey(1) & 0xFF
        if key in _QUIT_KEYS:
            why = "key"
        elif cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
            why = "window"
        elif max_seconds is not None and res.shown and time.perf_counter() - t0 >= max_seconds:
            why = "max-seconds"  # (after the first frame: a camera slow to start still shows one, as before)
        return why is not None

    # (held, so that the preview's own end leaves the stream as a stall does: a ``break`` closed it as the
    # consumer's end of the loop, which waits for the source's read, the window frozen on screen until a
    # stalled camera's read returned (for good where it never did; a review, session 68))
    avatars = None
    try:
        avatars = av.stream(frames(), timestamps(), face_index=face, on_wait=waiting)
        for i, avatar in avatars:
            frame = store.pop(i)
            at = due.pop(i)
            if avatar is not None and not avatar.stale:
                res.found += 1
            shown = compose(frame, avatar, side)
            if shown is frame:
                shown = frame.copy()
            if not stream:  # a file plays at its own times, never faster (each frame when its time comes)
                if clock is None:
                    clock = (time.perf_counter(), at)
                why = wait_until(clock[0] + at - clock[1])
                if why is not None:
                    break
                late = time.perf_counter() - (clock[0] + at - clock[1])
                if late > 0.25:  # a stall (a slow frame, the models' first calls): the rest is not rushed
                    clock = (clock[0] + late, clock[1])
            fps = meter.tick()
            draw_label(shown, f"{fps:4.1f} fps" + ("" if avatar is not None else "  no face"))
            cv2.imshow(window, shown)
            res.shown += 1
            res.last = shown
            key = cv2.waitKey(1) & 0xFF  # (the window's events: a file's next frame waits in wait_until)
            if key in _QUIT_KEYS:
                why = "key"
                break
            if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                why = "window"
                break
            if max_frames is not None and res.shown >= max_frames:
                why = "frames"
                break
            if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                why = "max-seconds"
                break
        else:
            if why is None and not stream and res.shown and ended["why"] == "end" and info is not None:
                read_frames = res.shown + res.damaged
                res.expected = expected_frames(file_frames, info, None, read_frames)
                # the last frame lasts what it says, where the whole file was read (a damaged or cut file's
                # last decoded frame was held to the header's end, up to 10 s, with no word)
                if info.stream_duration is not None and read_whole(info, file_frames, None, read_frames, True):
                    # (OpenCV's frame times count from the video stream's own start, not the file's: start 0)
                    why = wait_until(time.perf_counter() + info.last_shown(0.0, at, 1.0 / fps_src))
        res.stopped_by = why or ended["why"]
        res.seconds = time.perf_counter() - t0
        res.fps = res.shown / res.seconds if res.seconds > 0 else 0.0
        return res
    finally:
        if avatars is not None:
            _abandon(avatars)
        try:
            cv2.destroyWindow(window)
            cv2.waitKey(1)
        except cv2.error:
            pass
        # quit while the source's read was still waiting: the window is gone; the caller releases the
        # capture after this returns, never under the read (a native crash)
        quitting.set()
        deadline = time.monotonic() + READER_WAIT_S
        while reading.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)


class _PreviewEnded(Exception):
    """Thrown into the preview's stream where the preview ends (:func:`_abandon`)."""


def _abandon(avatars) -> None:
    """End the preview's stream (``Avatarizer.stream``'s generator) without
    waiting for a read of the source in progress: any exception but
    ``GeneratorExit`` leaves it to finish on its own (``run``'s end then
    waits up to :data:`READER_WAIT_S` for it, the window already closed),
    where closing the generator waits for it. Nothing for a stream that has
    ended."""
    try:
        avatars.throw(_PreviewEnded())
    except (_PreviewEnded, StopIteration):
        pass


def _probe(source):
    """``videoio.probe`` of a file (its last frame lasts to the video
    stream's own end, ``Probe.last_shown``: an animated GIF's, PNG's or
    WebP's what it says), None where it cannot be read."""
    try:
        from . import videoio

        return videoio.probe(source)
    except Exception:  # noqa: BLE001 - an odd file: no hold
        return None


def compose(frame, avatar, side: bool):
    """What the video and live commands show for one BGR frame: the avatar over
    the face (``side`` False) or beside the frame on white (``side`` True;
    white where there is no avatar)."""
    import numpy as np

    if not side:
        return avatar.overlay(frame) if avatar is not None else frame
    h, w = frame.shape[:2]
    if avatar is not None:
        pic = np.ascontiguousarray(avatar.render(width=w, height=h, background="white", roll=True)[..., 2::-1])
    else:
        pic = np.full_like(frame, 255)
    return np.concatenate([frame, pic], axis=1)
