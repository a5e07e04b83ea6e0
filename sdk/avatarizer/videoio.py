"""Video files out: browser-playable H.264 with the input's sound, in one pass.

Frames are piped raw (BGR, as OpenCV decodes them) into ``ffmpeg``, which
encodes H.264 (libx264, yuv420p, ``+faststart`` so a browser can start before
the whole file is there) and takes the sound track from the input file in the
same run: copied when it is AAC or MP3 (what browsers play in MP4), otherwise
re-encoded to AAC. The video bitrate follows the input's (scaled by the pixel
count when the output is larger, as side by side is); when the input's bitrate
is unknown, x264's constant quality (CRF 20) is used instead.

``probe(path)`` asks ``ffprobe`` about a file; ``H264Writer`` is the encoder;
:func:`capture` opens a video file for reading with OpenCV, whatever its name.
Both need ``ffmpeg``/``ffprobe`` on PATH (``make sysdeps`` installs them);
:func:`available` says whether they are.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

#: Sound codecs that browsers play inside MP4 (copied untouched); others become AAC.
BROWSER_AUDIO = ("aac", "mp3")
#: x264 quality used when the input's bitrate is unknown.
FALLBACK_CRF = 20
#: The largest frame H.264 allows (level 6.2, MaxFS), in 16×16 macroblocks:
#: 8192×4352, or 5888×5888; larger frames encode but decoders may refuse them.
MAX_MACROBLOCKS = 139_264


#: Animated image formats read frame by frame with Pillow (:class:`ImageFrames`): OpenCV's FFmpeg gives
#: an animated PNG's frames broken times (a 2 s APNG became 0.1 s of video) and cannot decode animated WebP.
#: (GIF is read by OpenCV, whose times are the file's; :func:`probe` takes its rate from its durations.)
PILLOW_ANIMATED = ("PNG", "WEBP")
#: The frame time of an animated image frame that says 0 ms (or less): what browsers show it for.
ZERO_DELAY_MS = 100.0
#: A GIF frame that says less than this lasts :data:`ZERO_DELAY_MS`, as FFmpeg's GIF reader (which
#: decodes GIFs here: OpenCV) and browsers show it.
GIF_MIN_DELAY_MS = 20.0
#: The highest rate an animated image's frames are written at (their times' common step, else this).
MAX_IMAGE_FPS = 100
#: The highest rate a frame rate is fitted to the frames' times: :func:`image_rate`'s common step or whole
#: rate, a video's base rate (``Probe.output_rate``) and its closest pair (:func:`_fitted_base_rate`), and
#: ``animate``'s closest pair of stamped lines (``cli._rate_of``)
MAX_FITTED_FPS = 60


class ImageFrames:
    """``cv2.VideoCapture``'s reading interface (``read``, ``get``, ``set``,
    ``isOpened``, ``release``) over the frames of an animated PNG or WebP,
    decoded by Pillow (BGR, as OpenCV gives a video's frames; transparent pixels
    read over a light grey, ``imageio.flatten_alpha``),
    each frame's time the sum of the durations before it. ``durations``:
    each frame's in ms; ``fps``: the rate their times fit
    (:func:`image_rate`)."""

    def __init__(self, image, durations: list[float]):
        self._im, self.durations, self._i, self._t = image, list(durations), -1, 0.0
        self.fps = float(image_rate(self.durations))
        # (Pillow's frame of the first duration: after an APNG's hidden default image, hidden_default_image)
        self._first = max(0, int(getattr(image, "n_frames", 1)) - len(self.durations))

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._im is not None

    def read(self):
        nxt = self._i + 1
        if self._im is None or nxt >= len(self.durations):
            return False, None
        try:
            self._im.seek(nxt + self._first)
            # (as a still image is read: 16-bit grey scaled to 8 bits, which convert("RGB") clipped at 255, an
            # almost white frame; an ICC profile's colours to sRGB)
            from .imageio import _pil_rgb

            frame = np.asarray(_pil_rgb(self._im))[:, :, ::-1].copy()
        except Exception:  # noqa: BLE001 - a damaged frame ends the video, as a decoder's error does
            return False, None
        if self._i >= 0:
            self._t += self.durations[self._i]
        self._i = nxt
        return True, frame

    def get(self, prop) -> float:
        import cv2

        return {cv2.CAP_PROP_POS_MSEC: self._t, cv2.CAP_PROP_FPS: self.fps,
                cv2.CAP_PROP_FRAME_COUNT: float(len(self.durations)),
                cv2.CAP_PROP_FRAME_WIDTH: float(self._im.width if self._im is not None else 0),
                cv2.CAP_PROP_FRAME_HEIGHT: float(self._im.height if self._im is not None else 0)}.get(prop, 0.0)

    def set(self, prop, value) -> bool:
        return False

    def release(self) -> None:
        if self._im is not None:
            self._im.close()
            self._im = None


def one_frame_each(starts, rate) -> bool:
    """Whether frames starting at ``starts`` (seconds) each fall on an output
    frame of their own when written at ``rate`` frames per second (none is
    lost to a later one on the same output frame)."""
    slots = np.round(np.asarray(starts, np.float64) * float(rate))
    return len(np.unique(slots)) == len(slots)


def image_rate(durations) -> Fraction:
    """The frame rate an animated image's frames are written at: 1000 over
    their durations' common step in whole ms (1 s and 0.5 s frames: 2 fps)
    where they are whole ms and that is at most :data:`MAX_FITTED_FPS`; else the lowest
    whole rate up to it at which no two frames fall on one output frame
    (a GIF made from 30 fps video stores delays of 30, 30 and 40 ms: its
    step, 10 ms, wrote it at 100 fps; now 30); else their average rate, at
    most :data:`MAX_IMAGE_FPS`."""
    import math

    durations = [max(1.0, float(d)) for d in durations]
    step = 0
    for d in durations:
        step = math.gcd(step, int(round(d)))
    exact = Fraction(1000, max(step, 1))
    starts = np.concatenate([[0.0], np.cumsum(durations[:-1])]) / 1000.0
    whole = all(abs(d - round(d)) < 1e-6 for d in durations)
    if exact <= MAX_FITTED_FPS and whole and one_frame_each(starts, exact):
        return exact
    # (the common step of the durations in whole ms fits only where they are whole: a 60 fps APNG's 16.667 ms
    # were 17, 58.8 fps, and two of 120 frames fell on one output frame and were lost; 30 fps's 33.333, 30.3)
    average = len(durations) / (sum(durations) / 1000.0)
    for rate in range(max(1, math.ceil(average - 1e-6)), MAX_FITTED_FPS + 1):  # (24.0000000001: 24)
        if one_frame_each(starts, rate):
            return Fraction(rate)
    return min(Fraction(average).limit_denominator(1000), Fraction(MAX_IMAGE_FPS))


#: Pillow's formats whose several frames are not an animation but one picture (:func:`still_image`): a
#: camera's MPO (the photo and its previews or a stereo pair), a TIFF of pages, an icon's sizes, a PSD's
#: layers; the first frame is the photo. Any other format with several frames is taken for an animation.
STILL_FORMATS = ("MPO", "TIFF", "ICO", "ICNS", "CUR", "PSD", "DCX")


def still_image(path) -> str | None:
    """The format name (Pillow's: ``"JPEG"``, ``"PNG"``...) when ``path`` is
    a still image (one frame, or a format whose frames are one picture:
    :data:`STILL_FORMATS`), else None (a video, an animated
    image, or a file Pillow does not read). Only the header is read."""
    try:
        if not os.path.isfile(path):  # (a named pipe would block the read of its header)
            return None
        import warnings

        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (only the header is read)
            with Image.open(path) as im:
                several = getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1
                # (an MPO or a TIFF of pages was written as a one-frame 40 ms video; a review, session 71)
                kind = None if several and im.format not in STILL_FORMATS else im.format
    except Exception:  # noqa: BLE001 - not an image Pillow reads (or one it refuses): a video, for OpenCV
        return None
    if kind is None or kind == "MPEG":  # (Pillow names an MPEG-1/2 video stream by its header)
        return None
    if kind == "GIF" or kind in STILL_FORMATS:  # (one frame: FFmpeg's gif demuxer names no image pipe, and
        # took it for a video; a still format Pillow names: FFmpeg reads an MPO without a .jpg name as a
        # stream of two JPEG pictures, an icon's sizes as its own format)
        return kind
    exe = shutil.which("ffprobe")
    if exe is None:
        return kind
    # a raw MJPEG stream (an IP camera's dump) opens in Pillow as one JPEG: FFmpeg's demuxer tells, and an
    # image pipe holds one picture or a stream of them (at most two packets read, in the same call)
    cmd = [exe, "-v", "error", "-count_packets", "-read_intervals", "%+#2", "-select_streams", "v:0",
           "-show_entries", "format=format_name:stream=nb_read_packets", "-of", "json", file_url(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        doc = json.loads(res.stdout or "{}")
        name = str((doc.get("format") or {}).get("format_name") or "")
        packets = int(((doc.get("streams") or [{}])[0] or {}).get("nb_read_packets") or 1)
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, AttributeError):
        return kind
    if not name or name == "image2":
        return kind
    if not name.endswith("_pipe"):  # (mjpeg, mpegvideo...: a video stream)
        return None
    return kind if packets <= 1 else None


def animated_image(path, formats: tuple[str, ...] = PILLOW_ANIMATED) -> tuple[object, list[float]] | None:
    """``(the opened Pillow image, each frame's duration in ms)`` when
    ``path`` is an animated image of one of ``formats`` (Pillow's names;
    default :data:`PILLOW_ANIMATED`, the formats read by Pillow), else
    None. A duration of 0 or less is :data:`ZERO_DELAY_MS`, a GIF's under
    :data:`GIF_MIN_DELAY_MS` too.

    ``ValueError`` (naming the file) for one that :func:`avatarizer.imageio.load_image`'s checks before
    decoding refuse: a size outside ``MIN_SIDE``..``MAX_SIDE``, a PNG with too much before or after its
    image data, or whose first image's data or any frame's is short, corrupt or out of the image
    (:func:`avatarizer.imageio.check_animated_png`). Its frames went to Pillow unchecked: a 511-byte
    animated PNG declaring 12000×12000 took 1.5 GB before the size was refused, one whose 8000×8000
    frames held 4 rows was written out as a video of grey frames (session 64)."""
    import warnings

    from . import imageio as IO

    try:
        if not os.path.isfile(path):  # (a named pipe would block the read of its header)
            return None
        from PIL import Image

        with open(path, "rb") as f:
            IO._check_png_head(f)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (the size is checked below)
            im = Image.open(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except Exception:  # noqa: BLE001 - not an image Pillow reads: OpenCV's to try
        return None
    try:
        if im.format not in formats or not getattr(im, "is_animated", False):
            im.close()
            return None
        IO._check_size(im.height, im.width, "an animated image")
        if im.format == "PNG":
            with open(path, "rb") as f:
                IO._check_data(f, im)
                IO.check_animated_png(f)
    except ValueError as exc:
        im.close()
        raise ValueError(f"{path}: {exc}") from None
    except Exception:  # noqa: BLE001 - damaged: OpenCV's to try, and to refuse
        im.close()
        return None
    try:
        least = GIF_MIN_DELAY_MS if im.format == "GIF" else 0.0
        durations = []
        for i in range(IO.hidden_default_image(im), im.n_frames):
            im.seek(i)
            if "duration" not in im.info:
                im.load()  # (a WebP frame's duration is known once it is decoded)
            d = im.info.get("duration")
            durations.append(float(d) if isinstance(d, (int, float)) and d > 0 and d >= least else ZERO_DELAY_MS)
        im.seek(0)
    except Exception:  # noqa: BLE001 - damaged: OpenCV's to try, and to refuse
        im.close()
        return None
    return im, durations


def _gif_durations(path) -> tuple[object, list[float]] | None:
    """``(the opened Pillow image, each frame's duration in ms)`` of an
    animated GIF as FFmpeg times its frames (its packets' durations, a delay
    under 20 ms taken as 100 ms), by ffprobe: Pillow decoded every frame to
    reach its duration (0.9 s for 300 frames of 512 px, every time a GIF was
    probed). None for anything else, or without ffprobe."""
    exe = shutil.which("ffprobe")
    try:
        if exe is None or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            if f.read(6) not in (b"GIF87a", b"GIF89a"):
                return None
        from PIL import Image

        im = Image.open(path)  # (the size, from the header)
    except Exception:  # noqa: BLE001 - unreadable: the other ways say so
        return None
    try:
        res = subprocess.run([exe, "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=duration_time",
                              "-of", "csv=p=0", file_url(path)], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=60)
        durations = [1000.0 * float(v) for v in res.stdout.split() if v not in ("", "N/A")]
    except (OSError, subprocess.SubprocessError, ValueError):
        durations = []
    if len(durations) < 2 or not all(d > 0 and np.isfinite(d) for d in durations):  # (a still GIF: OpenCV's)
        im.close()
        return None
    return im, durations


def capture(path):
    """``cv2.VideoCapture`` of the file ``path``, whatever its name: by its
    absolute path (FFmpeg would read ``take:1.mp4`` as the protocol
    ``take``), and by ``/proc/self/fd/N`` when the name is not valid UTF-8
    (OpenCV takes the name as UTF-8; a lone surrogate from such a name
    crashed it) or holds a ``%`` (OpenCV and FFmpeg's image demuxer read
    ``p%d.jpg`` as the pattern of an image sequence: the files ``p0.jpg``,
    ``p1.jpg``... beside it, not the file named). ``OSError`` when it cannot
    be opened so. An animated PNG or WebP is read by Pillow instead
    (:class:`ImageFrames`)."""
    import cv2

    try:
        animated = animated_image(path)
    except ValueError as exc:  # (refused before its frames are decoded)
        raise OSError(str(exc)) from None
    if animated is not None:
        return ImageFrames(*animated)

    name = os.path.abspath(path)
    try:
        name.encode("utf-8")
        literal = "%" not in name
    except UnicodeEncodeError:
        literal = False
    if not literal:
        fd = os.open(path, os.O_RDONLY)
        try:
            link = f"/proc/self/fd/{fd}"
            if not os.path.exists(link):
                raise OSError(f"{os.fsdecode(path)!r} has a name OpenCV cannot open as it is on this system "
                              "(not valid UTF-8, or a '%' it reads as a pattern); rename the file") from None
            return cv2.VideoCapture(link)  # FFmpeg opens the file anew: fd is not needed after
        finally:
            os.close(fd)
    return cv2.VideoCapture(name)


def temp_prefix(path) -> str:
    """The prefix of a temporary file written beside ``path`` before it is
    moved into place: a dot and at most the first 64 bytes of its name (a
    valid name near the file system's 255-byte limit left no room for the
    prefix and suffix around it: ENAMETOOLONG)."""
    return "." + os.fsencode(Path(path).name)[:64].decode("utf-8", errors="ignore") + "."


def video_files(folder, suffixes) -> list[Path]:
    """The regular files of ``folder`` whose suffix (lower case) is one of
    ``suffixes``, in name order: a named pipe or a device there is left out
    (opening one would wait for a writer forever)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes and p.is_file())


def macroblocks(width: int, height: int) -> int:
    """The 16×16 macroblocks of a ``width`` × ``height`` H.264 frame."""
    return -(-int(width) // 16) * -(-int(height) // 16)


class VideoWriteError(RuntimeError):
    """The encoder could not write the video (the message says why, from ffmpeg)."""


def available() -> bool:
    return shutil.which("ffmpeg") is not None


def file_url(path) -> str:
    """``path`` as ffmpeg's ``file:`` URL of its absolute path: a name that
    starts with ``-`` is not read as an option, and one with a colon
    (``clip:1.mp4``) not as a protocol. (``os.fsencode`` of the argument,
    which subprocess does, gives back any non-UTF-8 bytes of the name.)"""
    return "file:" + os.path.abspath(os.fspath(path))


@dataclass
class Probe:
    """What ``ffprobe`` says about an input file (``None`` where it does not know)."""

    width: int | None = None
    height: int | None = None
    rate: str | None = None              # frame rate as a rational, e.g. "30000/1001"
    base_rate: str | None = None         # r_frame_rate: the rate every frame time fits (VFR: above ``rate``)
    start: float = 0.0                   # seconds from the file's start to the video's first frame
    video_bitrate: int | None = None     # bits per second
    audio_codec: str | None = None       # None: no sound track (or unknown: see ``problem``)
    #: which sound track is kept (among the file's sound tracks, from 0): the
    #: one marked default, else the first; ``audio_tracks`` of them in all
    audio_track: int = 0
    audio_tracks: int = 0
    audio_default: bool = False  # the kept track is marked default (else the first, none being marked)
    duration: float | None = None        # seconds of the video stream (of the file when it does not say)
    problem: str | None = None           # why nothing is known (ffprobe missing), else None
    #: frames of the video stream by its own count or its own duration; None when
    #: only the file's duration is known (MKV, WebM: a longer sound track in it too)
    video_frames: int | None = None
    #: seconds of the whole file (its longest stream), None when it does not say
    file_duration: float | None = None
    #: seconds of the video stream by its own header alone (None: it does not say)
    stream_duration: float | None = None
    #: ``base_rate`` is the rate of the frames' closest pair, read from their times (:func:`_fitted_base_rate`)
    fitted: bool = False

    def output_rate(self) -> str:
        """The constant frame rate to write a video at (``rate``, or the base
        rate of a variable-frame-rate input when it is a sane rate that every
        frame time fits: no frame is dropped), as a rational; None if unknown."""
        try:
            avg = Fraction(self.rate) if self.rate else None
            base = Fraction(self.base_rate) if self.base_rate else None
        except (ValueError, ZeroDivisionError):
            return self.rate
        if avg and base and base <= MAX_FITTED_FPS and (avg < base or self.fitted):
            return self.base_rate
        return self.rate

    @property
    def variable_rate(self) -> bool:
        """Whether the frames come at a variable rate: the average rate below
        the rate every frame time fits (``r_frame_rate``)."""
        try:
            return bool(self.rate and self.base_rate and Fraction(self.rate) < Fraction(self.base_rate))
        except (ValueError, ZeroDivisionError):
            return False

    def sound_limit(self, start: float) -> float | None:
        """Seconds of sound, on the file's clock, that a video made of all
        the input's frames needs (the writer's ``duration``): ``start`` (where
        the caller places the video's first frame) plus the video's announced
        length; None (all of the sound, which the writer cuts to the frames
        written) when that length is not known or the frame rate varies: a
        variable-frame-rate file's header may end the video before its last
        frame (4.8 s announced, the last frame at 4.9 s; 6.1 s announced and
        the last at 8 s after a second-long gap)."""
        if self.duration is None or self.variable_rate:
            return None
        return start + self.duration

    def last_shown(self, start: float, last: float, step: float) -> float:
        """How long the last frame, at ``last`` seconds on the file's clock,
        is shown: to the video stream's own end (``start`` plus its own
        duration) where that is between one frame ``step`` and
        ``MAX_LAST_FRAME_S`` after it, at most that (an animated GIF's last
        frame lasts as long as it says: held one output frame, a 1 s frame
        of a GIF written at its 100 fps base rate lasted 10 ms) but never
        less than one ``step`` (a GIF of 655 s frames, the format's longest:
        capped at 10 s, its last frame was shorter than half an output frame
        and dropped from ``video -o OUT.json``, while the mp4 held it; a
        review, session 71), else ``step``."""
        if self.stream_duration is None:
            return step
        hold = start + self.stream_duration - last
        return min(hold, max(MAX_LAST_FRAME_S, step)) if hold > step else step

    def video_end(self, start: float) -> float | None:
        """The latest time, on the file's clock, the video's frames can
        plausibly have (a later timestamp is broken): ``start`` plus its
        announced length; with a variable frame rate, the file's whole
        length when that is later (see :meth:`sound_limit`); None when not
        known."""
        if self.duration is None:
            return None
        end = start + self.duration
        if self.variable_rate and self.file_duration is not None:
            end = max(end, self.file_duration)
        return end


def probe(path: Path) -> Probe:
    """The input's size, frame rate, video bitrate and sound codec (empty
    :class:`Probe` when ``ffprobe`` is missing or cannot read the file). An
    animated GIF, PNG or WebP's from its frames' durations (Pillow; a GIF's
    as FFmpeg times its frames): ffprobe's rate for a GIF is not one every
    frame time fits (4 fps for frames of 100, 500, 250 and 2000 ms: the
    second frame was dropped from an animation of it)."""
    gif = _gif_durations(path)  # (FFmpeg's own timing of the frames OpenCV decodes; no frame decoded)
    try:
        animated = gif or animated_image(path, PILLOW_ANIMATED + ("GIF",))
    except ValueError:  # (refused: capture says so; ffprobe reads no frame)
        animated = None
    if animated is not None:
        im, durations = animated
        im.close()
        rate, total = image_rate(durations), sum(durations) / 1000.0
        text = f"{rate.numerator}/{rate.denominator}"
        return Probe(width=im.width, height=im.height, rate=text, base_rate=text, duration=total,
                     video_frames=len(durations), file_duration=total, stream_duration=total)
    exe = shutil.which("ffprobe")
    if exe is None:
        return Probe(problem="ffprobe not found on PATH; install ffmpeg's ffprobe to keep the sound")
    cmd = [exe, "-v", "error", "-show_entries",
           "stream=codec_type,codec_name,width,height,r_frame_rate,avg_frame_rate,bit_rate,duration,start_time,"
           "nb_frames:stream_disposition=default",
           "-show_entries", "format=bit_rate,duration,start_time", "-of", "json", file_url(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        doc = json.loads(res.stdout or "{}")
    except (OSError, subprocess.SubprocessError, ValueError):
        return Probe()
    streams = doc.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    sounds = [s for s in streams if s.get("codec_type") == "audio"]
    # the track a player plays: the one marked default (a film's original language beside dubs), else the first
    marked = next((i for i, s in enumerate(sounds) if (s.get("disposition") or {}).get("default") == 1), None)
    track = 0 if marked is None else marked
    audio = sounds[track] if sounds else None
    out = Probe(audio_codec=(audio or {}).get("codec_name") if audio else None, audio_track=track,
                audio_tracks=len(sounds), audio_default=marked is not None)
    if video:
        out.width, out.height = _int(video.get("width")), _int(video.get("height"))
        average = None
        for key in ("avg_frame_rate", "r_frame_rate"):
            try:
                r = Fraction(str(video.get(key)))
            except (ValueError, ZeroDivisionError):
                continue
            if 0 < r <= 1000:
                out.rate = out.rate or f"{r.numerator}/{r.denominator}"
                if key == "r_frame_rate":
                    out.base_rate = f"{r.numerator}/{r.denominator}"
                else:
                    average = r
        fitted = _fitted_base_rate(exe, path, None if average is None else str(average), out.base_rate)
        if fitted is not None:
            out.base_rate, out.fitted = fitted, True
            if average is None:  # (no average rate: the header's base rate, a time base, was taken for it)
                out.rate = fitted
        try:  # a video that starts after its sound: where its first frame is on the file's clock
            start = float(video.get("start_time")) - float((doc.get("format") or {}).get("start_time"))
        except (TypeError, ValueError):
            start = 0.0
        out.start = start if 0 < start < 1e6 else 0.0
        own = _seconds(video.get("duration"))
        out.file_duration = _seconds((doc.get("format") or {}).get("duration"))
        out.duration = own or out.file_duration
        out.stream_duration = own
        out.video_frames = _int(video.get("nb_frames"))
        if out.video_frames is None and own and out.rate:
            out.video_frames = round(own * float(Fraction(out.rate)))
        elif out.video_frames is not None and own and out.rate:
            # a file cut without re-encoding (ffmpeg -ss ... -c copy, a phone's trim) keeps the frames before
            # the cut, which its edit list skips: nb_frames counts them, the stream's own duration does not
            # (a 4.07 s cut of a 30 fps clip said 287 frames and was reported truncated at 122)
            # (the base rate: the average counts the skipped frames too, and a variable rate's average
            # is below its fastest part, which hid a truncated variable-rate cut)
            shown = own * float(Fraction(out.base_rate or out.rate))
            if out.video_frames > shown + 1:
                out.video_frames = max(1, math.floor(shown))
        out.video_bitrate = _int(video.get("bit_rate"))
        if out.video_bitrate is None:  # some containers only know the total
            total = _int((doc.get("format") or {}).get("bit_rate"))
            sound = _int((audio or {}).get("bit_rate")) or 0
            if total and total > sound:
                out.video_bitrate = total - sound
    return out


#: how long :func:`_fitted_base_rate` may list a file's packets
PACKET_SCAN_SECONDS = 30.0


def gap_rate(ticks: int, tick: Fraction) -> Fraction | None:
    """The frame rate of frames whose closest pair of times is ``ticks``
    ticks of ``tick`` seconds apart, the times rounded to ticks (a frame
    period of P ticks gives gaps of floor(P) and ceil(P), so P is in
    [ticks, ticks + 1)): the highest whole rate that fits, else the highest
    NTSC rate (n * 1000/1001), else 1 / (ticks * tick) as a rational of
    denominator at most 1001 where one fits, else exactly; None where ``ticks`` is not positive. A 59.94
    fps clip at 1/60000 s (gaps of 1001 ticks) is 60000/1001, not 60, which
    the float times' 0.1% rule gave (0.0599 from 60, the rule's bound); a 30
    fps WebM at 1 ms (gaps of 33 and 34) is 30, not 1000/33."""
    if ticks <= 0 or tick <= 0:
        return None
    hi, lo = 1 / (ticks * tick), 1 / ((ticks + 1) * tick)
    whole = Fraction(math.floor(hi))
    if whole > lo and whole >= 1:
        return whole
    ntsc = Fraction(math.floor(hi * Fraction(1001, 1000)) * 1000, 1001)
    if ntsc > lo and ntsc > 0:
        return ntsc
    simple = hi.limit_denominator(1001)
    return simple if lo < simple <= hi else hi


def _fitted_base_rate(exe: str, path: Path, rate: str | None, base: str | None) -> str | None:
    """The rate of a video's frames' closest pair (:func:`gap_rate` of the
    packets' times in whole ticks of the stream's time base), as a rational,
    where the header's rates cannot be taken as they are and that rate is at
    most :data:`MAX_FITTED_FPS`; else None. Asked where the base rate
    ``base`` is over :data:`MAX_FITTED_FPS` (a time base, not a frame rate:
    a clip of 24 then 30 fps said 120, written at the average rate, 27.2 fps,
    its 30 fps second lost frames; a browser's WebM said 1000 and had no
    average ``rate``, written at 1000 fps, each frame 40 times), the fitted
    rate then above the average; and where the average is over 1% above the
    base rate (a slideshow's 4 s slides said 1/4 fps and 0.291 on average,
    the header's duration short of the last slide's hold: written at the
    average, slides changed at the wrong times), the fitted rate then at
    least the base rate. Read from the packets' times (no frame decoded)."""
    try:
        avg = Fraction(rate) if rate is not None else None
        top = Fraction(base)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (top > MAX_FITTED_FPS or (avg is not None and avg > top * Fraction(101, 100))):
        return None
    cmd = [exe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base:packet=pts",
           "-of", "json", file_url(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=PACKET_SCAN_SECONDS)
        info = json.loads(res.stdout or "{}")
        tick = Fraction(info["streams"][0]["time_base"])
        pts = sorted({int(p["pts"]) for p in info.get("packets", []) if isinstance(p.get("pts"), int)})
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            ZeroDivisionError):
        return None
    if len(pts) < 2:
        return None
    fitted = gap_rate(min(b - a for a, b in zip(pts, pts[1:])), tick)
    if fitted is not None and top > MAX_FITTED_FPS and (
            fitted > MAX_FITTED_FPS or not one_frame_each([float((t - pts[0]) * tick) for t in pts], fitted)):
        # jittered times (a browser's recording: 40 ms frames 12 to 60 ms apart): the lowest whole rate up to
        # MAX_FITTED_FPS at which no two frames fall on one output frame, else the average, as an animated
        # image's frames are written (image_rate); also where the closest pair's whole rate, whose period is
        # at or over that pair's gap, puts two of them on one output frame (a review, session 66)
        fitted = image_rate([float((b - a) * tick * 1000) for a, b in zip(pts, pts[1:])] + [0.0])
    if fitted is None or fitted > MAX_FITTED_FPS:
        return None
    if top > MAX_FITTED_FPS:
        if avg is not None and not avg < fitted:
            return None
    elif fitted < top:  # (the base rate fits every frame time: the closest pair is no slower)
        fitted = top
    return f"{fitted.numerator}/{fitted.denominator}"


#: the longest a video's last frame is shown by its stream's own duration (:meth:`Probe.last_shown`)
MAX_LAST_FRAME_S = 10.0

#: how long :func:`size_change` may read a file's key frames before it gives up (unchecked)
SIZE_CHECK_SECONDS = 10.0


def pictures_only(path: Path) -> bool:
    """Whether every video stream of the file is an attached picture (the
    cover art of a song: an ``.m4a`` or ``.mp3`` with a still image), so
    that it holds no video; False where it has one, and where that cannot be
    told (no ``ffprobe``, an unreadable file). OpenCV decodes such a picture
    as a one-frame video: the sound's two seconds became a 33 ms mp4."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return False
    cmd = [exe, "-v", "error", "-select_streams", "v", "-show_entries", "stream_disposition=attached_pic",
           "-of", "json", file_url(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        streams = json.loads(res.stdout or "{}").get("streams") or []
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return False
    return bool(streams) and all(isinstance(st, dict) and (st.get("disposition") or {}).get("attached_pic") == 1
                                 for st in streams)


def size_change(path: Path, until: float | None = None, timeout: float = SIZE_CHECK_SECONDS
                ) -> tuple[float, tuple[int, int], tuple[int, int]] | None:
    """Where the video's frames change size: ``(seconds from the first key
    frame, (w, h) before, (w, h) after)`` at the first key frame whose size is
    not the first one's, or None: one size throughout (up to ``until``
    seconds, when given), or not known (no ``ffprobe``, an unreadable file,
    ``timeout`` seconds passed: an hour of an all-intra 1080p file). Only key
    frames are decoded (``ffprobe -skip_frame nokey``, read as it comes and
    stopped at the first change: ~0.1 s for a 34 s clip). OpenCV's decoder
    does not follow such a change: it hands back the last frame of the first
    size for every later frame (opencv-python 4.11, swscaler "Slice
    parameters ... are invalid"). Not seen: a size change on a frame that is
    not a key frame (VP9, AV1 can)."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-skip_frame", "nokey", "-select_streams", "v:0"]
    if until is not None and until > 0:
        cmd += ["-read_intervals", f"%+{float(until) + 1.0:.3f}"]
    cmd += ["-show_entries", "frame=width,height,best_effort_timestamp_time,pts_time", "-of", "compact=p=0",
            file_url(path)]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True, errors="replace")
    except (OSError, ValueError):
        return None
    stop = threading.Timer(timeout, proc.kill)  # (a line may never come: the read is stopped with it)
    stop.daemon = True
    stop.start()
    first = t0 = None
    found = None
    try:
        for line in proc.stdout:
            f = dict(kv.split("=", 1) for kv in line.strip().split("|") if "=" in kv)
            size = (_int(f.get("width")), _int(f.get("height")))
            if None in size:
                continue
            t = None
            for key in ("best_effort_timestamp_time", "pts_time"):
                try:
                    t = float(f.get(key))
                    break
                except (TypeError, ValueError):  # ("N/A")
                    continue
            if first is None:
                first, t0 = size, t
            elif size != first:
                found = ((max(0.0, t - t0) if t is not None and t0 is not None else 0.0), first, size)
                break
    except (OSError, ValueError):
        found = None
    finally:
        stop.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return found


def _sound_end(path: Path) -> float | None:
    """Where ``path``'s first sound track ends on the file's clock (its start
    time plus its length) by ``ffprobe``, or None."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=start_time,duration", "-of",
           "json", file_url(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        streams = json.loads(res.stdout or "{}").get("streams") or []
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError):
        return None
    if not streams or not isinstance(streams[0], dict):
        return None
    length = _seconds(streams[0].get("duration"))
    if length is None:
        return None
    try:  # a sound that starts after the picture (an offset kept from the input) ends that much later
        start = float(streams[0].get("start_time"))
    except (TypeError, ValueError):
        start = 0.0
    return length + (start if 0 < start < 1e6 else 0.0)


def _seconds(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if 0 < f < 1e7 else None  # (also refuses nan and inf)


def _int(v) -> int | None:
    try:
        i = int(v)
    except (TypeError, ValueError):
        return None
    return i if i > 0 else None


class H264Writer:
    """Writes BGR uint8 frames of ``size`` (width, height) to ``path`` as
    H.264/yuv420p MP4 at ``rate`` frames per second, with the sound track of
    ``audio_from`` (limited to ``max_seconds`` and to ``duration``, the
    video's expected end, when known: :meth:`Probe.sound_limit`), through one
    ``ffmpeg`` process. The sound ends with the picture: a sound track
    shorter than the picture ends early (the video is whole); one that
    outlasts the frames written (a longer sound track, a damaged input that
    stopped decoding early, a header that announced less video than its
    frames hold) is cut to them by :meth:`close` in a second, copying pass
    (no re-encoding), which ffmpeg cannot do in the first: it does not know
    how many frames will come. ``path`` should be a fresh temporary file:
    ffmpeg writes it in place. Call :meth:`close` to finish (raises
    :class:`VideoWriteError` when ffmpeg failed) or :meth:`abort` to stop it."""

    def __init__(self, path: Path, size: tuple[int, int], rate: str | float, *, audio_from: Path | None = None,
                 audio_codec: str | None = None, bitrate: int | None = None, max_seconds: float | None = None,
                 duration: float | None = None, audio_track: int = 0, audio_tracks: int = 1,
                 audio_default: bool = True):
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise VideoWriteError("ffmpeg is not installed (make sysdeps installs it)")
        self.size = (int(size[0]), int(size[1]))
        self.frames = 0
        self.path = Path(path)
        self._rate = float(Fraction(rate)) if isinstance(rate, str) else float(rate)
        self._sound_until: float | None = None  # seconds of sound asked of ffmpeg (None: all of it)
        self._sound = False
        self.audio = "none (the input has no sound track)" if audio_from is not None and audio_codec is None \
            else "none"
        rate = rate if isinstance(rate, str) else f"{float(rate):.6f}"
        cmd = [exe, "-v", "error", "-y", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{self.size[0]}x{self.size[1]}",
               "-framerate", rate, "-i", "pipe:0"]
        maps = ["-map", "0:v:0"]
        if audio_from is not None and audio_codec is not None:
            # not -shortest: ffmpeg would stop (and cut the video) where the sound ends
            limits = [t for t in (max_seconds, duration) if t is not None]
            if limits:
                self._sound_until = min(limits)
                cmd += ["-t", f"{self._sound_until:.3f}"]
            cmd += ["-i", file_url(audio_from)]
            maps += ["-map", f"1:a:{int(audio_track)}"]
            self._sound = True
            if audio_codec in BROWSER_AUDIO:
                maps += ["-c:a", "copy"]
                self.audio = f"copied from the input ({audio_codec})"
            else:
                maps += ["-c:a", "aac", "-b:a", "128k"]
                self.audio = f"re-encoded to AAC (the input's {audio_codec} does not play in browsers)"
            if audio_tracks > 1:  # (the others were dropped without a word)
                why = "the input's default" if audio_default else "the first: none is marked default"
                self.audio += f"; track {int(audio_track) + 1} of {audio_tracks} ({why}), the others left out"
        video = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        if self.size[0] % 2 or self.size[1] % 2:  # 4:2:0 needs even sides: one black row/column more
            video += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:0:0:color=black"]
        if bitrate:
            self.bitrate = int(bitrate)
            video += ["-b:v", str(self.bitrate), "-maxrate", str(int(1.5 * self.bitrate)),
                      "-bufsize", str(2 * self.bitrate)]
        else:
            self.bitrate = None
            video += ["-crf", str(FALLBACK_CRF)]
        cmd += maps + video + ["-movflags", "+faststart", "-f", "mp4", file_url(path)]
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a {self.size[0]}×{self.size[1]} BGR uint8 frame, got {frame.shape} "
                             f"{frame.dtype}")
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except (BrokenPipeError, ValueError):  # ffmpeg exited (ValueError: stdin already closed)
            self._proc.wait()
            raise VideoWriteError(f"ffmpeg stopped: {self._why()}") from None
        self.frames += 1

    def close(self) -> None:
        """Finishes the file (ffmpeg writes the index and moves it to the front)."""
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        rc = self._proc.wait()
        if rc != 0:
            why = self._why()
            self._err.close()  # (raising before this kept ffmpeg's log file open while the writer lived; a review)
            raise VideoWriteError(f"ffmpeg failed: {why}")
        self._err.close()
        seconds = self.frames / self._rate
        if self._sound and self.frames:
            # where the sound written ends (where the sound asked for ends, when it cannot be measured),
            # after the frames
            sound = _sound_end(self.path)
            if sound is None:
                sound = self._sound_until
            elif self._sound_until is not None:
                sound = min(sound, self._sound_until)
            if sound is not None and seconds < sound - 0.5 / self._rate:
                self._cut_sound(seconds)

    def _cut_sound(self, seconds: float) -> None:
        """Cuts the written file to ``seconds`` (the picture's length), both
        tracks copied: the sound outlasted the frames (a longer sound track,
        a damaged input, a variable-frame-rate header).
        ffmpeg cannot do it in the first pass, which does not know how many
        frames will come."""
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(self.path), suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        cmd = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-nostdin", "-i", file_url(self.path),
               "-map", "0", "-c", "copy", "-t", f"{seconds:.3f}", "-movflags", "+faststart", "-f", "mp4",
               file_url(tmp)]
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, timeout=600)
            if res.returncode != 0:
                lines = res.stderr.decode("utf-8", "replace").strip().splitlines()
                raise VideoWriteError("ffmpeg could not cut the sound to the video's length: "
                                      + (lines[-1] if lines else f"exit status {res.returncode}"))
            os.chmod(tmp, os.stat(self.path).st_mode & 0o7777)  # (mkstemp's file is 0600)
            os.replace(tmp, self.path)
        except subprocess.TimeoutExpired:
            raise VideoWriteError("ffmpeg took too long cutting the sound to the video's length") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.audio += f", cut to the video's {seconds:.1f} s"

    def abort(self) -> None:
        """Stops ffmpeg at once (its partial output is the caller's to remove)."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._proc.wait()
        self._err.close()

    def _why(self) -> str:
        try:
            self._err.seek(0)
            text = self._err.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return text.splitlines()[-1] if text else f"exit status {self._proc.returncode}"


def expected_frames(count: int, info, limit: int | None, done: int) -> int | None:
    """The frame count the header announced (within ``--max-seconds``) when
    fewer were decoded, i.e. the input is truncated; else None. The count is
    the video stream's own (``info.video_frames``, ffprobe's) where it has
    one; else, for a file with a sound track, unknown: OpenCV's ``count`` is
    then the file's duration times the rate, and the sound may outlast the
    picture (an intact MKV was reported truncated); else OpenCV's. The
    container's count may be an estimate: one frame of slack."""
    if info.video_frames is not None and info.video_frames > 0:
        count = info.video_frames
    elif info.audio_codec is not None:
        count = 0
    expected = min(count, limit) if limit else count
    return expected if count > 0 and done < expected - 1 else None


def read_whole(info, count: int, limit: int | None, done: int, ran_out: bool) -> bool:
    """Whether a walk over the input read every frame of it: it ran out of
    frames (``ran_out``; not stopped by ``--max-seconds``), none is missing
    by :func:`expected_frames`, and as many were decoded as the video
    stream's own count says, where it has one (that check's frame of slack
    would hold a truncated GIF's last decoded frame to the header's end)."""
    if not ran_out or expected_frames(count, info, limit, done) is not None:
        return False
    return not info.video_frames or done >= info.video_frames


#: the most failed reads in a row a walk over a video file (``video``, ``live``) goes on after, while
#: fewer frames than its header counts were read: a damaged packet mid-file fails one read, and
#: decoding goes on after it (it ended the walk there: 12 of 78 frames)
MAX_BAD_READS = 64


def lost_frames(failed_reads: int, first_s: float | None, last_s: float | None, step_s: float, decoded: int) -> int:
    """Frames of a video file lost to ``failed_reads`` (:func:`read_past_damage`'s
    skips): at most those, and no more than the ``decoded`` frames' times
    (the first's and the last's, seconds) skip at ``step_s`` apart. At a
    truncated file's end a read fails on the partial packet and the decoder
    then gives the frame it held: no frame is lost (45 frames 40 ms apart
    were reported as 46, one "shown in a lost one's place"). OpenCV's times
    next to a damaged packet are off by a frame or two, so the frames
    skipped are counted over the whole walk, not at the failure."""
    if not failed_reads or first_s is None or last_s is None or not step_s > 0:
        return int(failed_reads)
    implied = round((last_s - first_s) / step_s) + 1
    return int(min(failed_reads, max(0, implied - decoded)))


def read_past_damage(read, consumed: int, total: int) -> tuple[bool, object, int]:
    """``read()`` (an OpenCV capture's ``read``, or one like it) of a video
    file's next frame, retried after failed reads while ``consumed`` (frames
    read and skipped so far) and the failures stay under ``total`` (the
    header's frame count), at most :data:`MAX_BAD_READS` in a row. Returns
    (a frame was read, the frame, the failed reads it skipped: 0 unless a
    frame followed them)."""
    ok, frame = read()
    misses = 0
    while (not ok or frame is None) and misses < MAX_BAD_READS and consumed + misses < total:
        misses += 1
        ok, frame = read()
    got = bool(ok) and frame is not None
    return got, frame, misses if got else 0
