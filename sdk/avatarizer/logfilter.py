"""Keeps the libraries' own log lines (MediaPipe, FFmpeg) off a command's stderr.

MediaPipe's graphs (and the TensorFlow Lite runtime inside them) write
informational and warning lines straight to file descriptor 2 from C++
through Abseil logging, which no environment variable silences in
``mediapipe==0.10.21`` (``GLOG_minloglevel`` and ``TF_CPP_MIN_LOG_LEVEL``
no longer reach it; upstream issues google-ai-edge/mediapipe#5371, #5737,
#6040). A command-line run then shows half a dozen lines such as::

    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    W0000 00:00:1795939045.795445   31640 inference_feedback_manager.cc:114] Feedback manager ...

around its one line of output or of error; OpenCV's FFmpeg adds its
decoder's complaints about a damaged file (``[h264 @ 0x55...] Invalid NAL
unit size``) before the command's own message says the same in one line.
:class:`StderrFilter` puts a
pipe in place of file descriptor 2 and a small child process that copies
what comes through it to the real stderr, line by line, except those lines: Abseil's
``I`` (info) and ``W`` (warning) lines, the two TensorFlow Lite banners
and FFmpeg's ``[codec @ address]`` lines.
Errors (``E``, ``F`` lines), Python's own messages, progress bars (partial
lines are passed on at once) and anything else go through unchanged.

Two more kinds of library log lines are kept off by :class:`QuietLibraries`
in the command's own process: OpenCV's logging (``[ WARN:0@0.199] global
cap_v4l.cpp:913 open VIDEOIO(V4L2:/dev/video7): can't open camera by
index``, ``[ERROR:0@0.200] global obsensor_uvc_stream_channel.cpp:158 ...
Camera index out of range`` before ``live``'s own "could not open camera 7")
is set to ``LOG_LEVEL_SILENT``; and Python warnings raised inside other
packages (Pillow's ``UserWarning: Corrupt EXIF data`` with its source line)
go to the logging system (the ``py.warnings`` logger, as
``logging.captureWarnings`` sends them; with no handler configured they are
dropped) instead of being printed raw. A warning raised in avatarizer's own
code is the command's to say: one line, ``avatarizer COMMAND: warning: ...``.

Only the command line (:mod:`avatarizer.cli`) uses them, for the duration of
one command: a library must not take over its host's file descriptors,
log levels or warning display.
Set ``AVATARIZER_LIBRARY_LOGS=1`` to see those lines.
"""
from __future__ import annotations

import os
import re
import sys
import threading

#: Whole lines that are dropped.
NOISE = re.compile(
    rb"^(?:\[[^\]\n]+ @ 0x[0-9a-f]+\] .*"  # FFmpeg's decoder inside OpenCV: "[h264 @ 0x55..] Invalid NAL unit"
    rb"|Truncating packet of size \d+ to \d+"  # ... and its packet reader on a damaged file (no prefix)
    # libtiff inside Pillow on a damaged TIFF: "TIFFFillStrip: Read error on strip 0; ...", "ZIPDecode: Not
    # enough data at scanline 0 ..." (the command's own one-line error follows)
    rb"|(?:TIFF[A-Z][A-Za-z]+|(?:ZIP|LZW|PackBits|Fax3|JPEG|LZMA|ZSTD|WebP)(?:Decode|PreDecode|SetupDecode)"
    rb"[A-Za-z]*): .*"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./+-]+:\d+\] .*"
    rb"|INFO: Created TensorFlow Lite \w+ delegate for \w+\."
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)\r?$")
#: A partial line that starts so may become a dropped line: held until its end.
_MAYBE = re.compile(rb"^(?:\[[^\]\n]*(?:\] ?)?$|\[[^\]\n]+ @ |[IW]\d{0,4}(?: |$)|[IW]\d{4} |I(?:N(?:F(?:O(?::.*)?)?)?)?$|INFO: |"
                    rb"W(?:A(?:R(?:N(?:I(?:N(?:G(?::.*)?)?)?)?)?)?)?$|WARNING: |"
                    rb"T(?:r(?:u(?:n(?:c(?:a(?:t(?:i(?:n(?:g(?: .*)?)?)?)?)?)?)?)?)?)?$)")


#: The filter process's program: it copies its stdin (the pipe that is file
#: descriptor 2 of the command) to its stdout (the real stderr), without the
#: lines :data:`NOISE` matches, until every writer has closed the pipe. It
#: ignores the signals a terminal sends the whole process group (Ctrl-C),
#: so it drains what the command writes while it stops.
_PROGRAM = """
import os, re, signal
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
NOISE, MAYBE = re.compile(%r), re.compile(%r)
held, broken = b"", False

def emit(data):
    global broken
    view = memoryview(data)
    while view and not broken:
        try:
            view = view[os.write(1, view):]
        except InterruptedError:
            continue
        except OSError:
            broken = True  # the real stderr is gone: keep draining, so the writers never block

while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    except OSError:
        break
    if not chunk:
        break
    held += chunk
    *lines, held = held.split(b"\\n")
    emit(b"".join(line + b"\\n" for line in lines if not NOISE.match(line)))
    if held and not MAYBE.match(held):
        emit(held)  # a progress bar's partial line: at once
        held = b""
if held and not NOISE.match(held):
    emit(held)
""" % (NOISE.pattern, _MAYBE.pattern)


class StderrFilter:
    """File descriptor 2 through a filter (see the module doc). ``start()``
    and ``stop()`` may be called any number of times; ``stop()`` restores
    the real stderr and waits (a moment) for the filter to pass on what is
    left in the pipe.

    The filter is a small child process (this Python, ``-S -E``), not a
    thread: when the command dies (a crash, ``os._exit``, SIGKILL) the
    pipe's write ends close, the child reads what is left and passes it
    on, so a fatal message is never lost; and it needs no lock of this
    process (a thread would wait for the GIL while a native call holding
    it fills the pipe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._real: int | None = None
        self._proc = None

    @property
    def active(self) -> bool:
        return self._real is not None

    def start(self) -> bool:
        """Routes file descriptor 2 through the filter (not when
        ``AVATARIZER_LIBRARY_LOGS`` is set, or when the system refuses);
        returns whether it is on."""
        import subprocess

        if library_logs_shown() or not sys.executable:
            return False
        with self._lock:
            if self._real is not None:
                return True
            try:
                _flush()
                real = os.dup(2)
            except OSError:
                return False
            try:
                r, w = os.pipe()
            except OSError:
                os.close(real)
                return False
            try:
                proc = subprocess.Popen([sys.executable, "-S", "-E", "-c", _PROGRAM], stdin=r, stdout=real,
                                        stderr=subprocess.DEVNULL, close_fds=True)
            except (OSError, ValueError, subprocess.SubprocessError):
                os.close(real), os.close(r), os.close(w)
                return False
            os.close(r)
            try:
                os.dup2(w, 2)
            except OSError:
                os.close(w)
                proc.wait()
                os.close(real)
                return False
            os.close(w)  # fd 2 is now the pipe's one write end here
            self._real, self._proc = real, proc
            return True

    def stop(self, timeout: float = 2.0) -> None:
        """Puts the real stderr back on file descriptor 2; what was written
        before is passed on (the filter ends when the pipe is empty and no
        process holds it any more; a child of the command that still does
        delays that, not this call beyond ``timeout``)."""
        import subprocess

        with self._lock:
            if self._real is None:
                return
            _flush()
            real, proc = self._real, self._proc
            self._real = self._proc = None
            os.dup2(real, 2)  # the pipe's last write end here closes
            os.close(real)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # it ends when the last writer does


def library_logs_shown() -> bool:
    """``AVATARIZER_LIBRARY_LOGS`` is set (to anything but 0): nothing is filtered."""
    return os.environ.get("AVATARIZER_LIBRARY_LOGS", "") not in ("", "0")


#: This package's folder: a warning raised in a file under it is avatarizer's own.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class QuietLibraries:
    """The libraries' log lines that do not pass through file descriptor 2
    as the filter sees them (see the module doc): OpenCV's log level
    (:meth:`opencv`, once ``cv2`` is about to be used) and Python warnings
    (:meth:`start`); :meth:`stop` puts both back as they were. Nothing is
    changed when ``AVATARIZER_LIBRARY_LOGS`` is set."""

    def __init__(self):
        self._cv2_level = None
        self._cv2_env = False  # OPENCV_LOG_LEVEL was set here
        self._showwarning = None
        self._handler = None
        self.prefix = "avatarizer"

    def start(self, prefix: str = "avatarizer") -> None:
        """Python warnings: a library's to the ``py.warnings`` logger (with no
        handler configured anywhere, a :class:`logging.NullHandler` there
        until :meth:`stop`, so that logging's last resort does not print them),
        avatarizer's own as one line ``PREFIX: warning: MESSAGE`` on stderr."""
        import logging
        import warnings

        if library_logs_shown() or self._showwarning is not None:
            return
        self.prefix = prefix
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._show
        logger = logging.getLogger("py.warnings")
        if not logger.hasHandlers():
            self._handler = logging.NullHandler()
            logger.addHandler(self._handler)

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        import logging
        import warnings

        if os.path.abspath(str(filename)).startswith(_PACKAGE):
            text = " ".join(str(message).split())
            try:
                print(f"{self.prefix}: warning: {text}", file=file or sys.stderr, flush=True)
            except (OSError, ValueError):
                pass
            return
        logging.getLogger("py.warnings").warning(
            "%s", warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    def opencv(self) -> None:
        """OpenCV's own logging silenced (imports ``cv2``), unless the user
        set ``OPENCV_LOG_LEVEL``. OpenCV reads that variable when it first
        logs, and then sets its level from it, over an earlier
        ``setLogLevel``: so both are set (``cv2.setLogLevel``; the
        ``cv2.utils.logging`` module of the docs is missing from the
        opencv-python wheels)."""
        if library_logs_shown() or self._cv2_level is not None or "OPENCV_LOG_LEVEL" in os.environ:
            return
        try:
            import cv2

            level = cv2.getLogLevel()  # (before the variable is set: its first reading may take it)
        except (ImportError, AttributeError):  # pragma: no cover - a build without it
            return
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
        self._cv2_env = True
        cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
        self._cv2_level = level

    def stop(self) -> None:
        import logging
        import warnings

        if self._showwarning is not None:
            warnings.showwarning, self._showwarning = self._showwarning, None
        if self._handler is not None:
            logging.getLogger("py.warnings").removeHandler(self._handler)
            self._handler = None
        if self._cv2_env:
            os.environ.pop("OPENCV_LOG_LEVEL", None)
            self._cv2_env = False
        if self._cv2_level is not None:
            import cv2

            cv2.setLogLevel(self._cv2_level)
            self._cv2_level = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


#: The command line's one filter.
FILTER = StderrFilter()
#: ... and its one switch for the libraries' logging inside its own process.
QUIET = QuietLibraries()
