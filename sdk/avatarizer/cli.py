"""The ``avatarizer`` command line.

    avatarizer --version
    avatarizer demo [-o DIR]            the README's main job
    avatarizer render-samples -n 24 -o gallery.png [--overwrite]
    avatarizer image IN -o OUT.png|OUT.svg|OUT.pdf [--size N] [--overwrite]
    avatarizer video IN.mp4 -o OUT.mp4 [--layout overlay|side-by-side] [--size N] [--face K] [--overwrite]
                     [--max-seconds S]      (--size: the output frame's longer side)
    avatarizer video IN.mp4 -o OUT.json|OUT.svg [--fps F] [--size N] [--face K] [--tolerance PX] [--player]
                     (--size: the animation's width and height)
    avatarizer animate --params IN.jsonl -o OUT.json|OUT.svg [--fps F] [--size N] [--tolerance PX]
    avatarizer live [SOURCE] [--layout overlay|side-by-side] [--face K] [--frames N] [--max-seconds S]
                    [--screenshot PATH.png] [--overwrite]     (SOURCE: camera index, default 0, file or URL)
    avatarizer bench [--json] [--frames N]

Heavy modules (MediaPipe, the pipeline) are imported inside the commands, so
``--version`` and ``--help`` answer at once.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import shlex
import signal
import stat
import sys
import tempfile
from pathlib import Path

from . import __version__
from .errors import AvatarizerError


#: What ``demo`` writes into its folder.
_DEMO_FILES = ("gallery.png", "default.png", "default.svg", "astronaut_avatar.png", "astronaut_avatar.svg",
               "astronaut_side_by_side.png")


def _demo(args) -> int:
    """``demo``: the gallery, the default face and the bundled portrait's
    avatar, written to temporary files and moved into place together
    (:func:`_commit_all`): an interrupted or failed run leaves none of the six
    (three were left, and the next run without ``--overwrite`` refused)."""
    from PIL import Image

    from . import schema
    from .gallery import gallery
    from .render import render, to_svg

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} is a file, not a folder")
    for name in _DEMO_FILES:  # all checked before anything is written
        _check_output(None, out / name, args.overwrite)
    temps = {name: _temp_beside(out / name, Path(name).suffix) for name in _DEMO_FILES}
    try:
        gallery(temps["gallery.png"], n=24, size=256)
        default = schema.default()
        Image.fromarray(render(default, 512, background="white")).save(temps["default.png"], format="PNG")
        temps["default.svg"].write_text(to_svg(default, 512, background="white"), encoding="utf-8")
        how = _demo_photo(temps)
        if how is None:
            return 1
        _commit_all([(temps[name], out / name) for name in _DEMO_FILES], args.overwrite)
    finally:
        for tmp in temps.values():
            _drop_temp(tmp)
    _say(f"wrote {out / 'gallery.png'} (24 sampled avatars)")
    _say(f"wrote {out / 'default.png'} and {out / 'default.svg'} (the canonical default face)")
    _say(f"wrote {out / 'astronaut_avatar.png'} and {out / 'astronaut_avatar.svg'} (the avatar of the bundled "
          f"astronaut photo; {how})")
    _say(f"wrote {out / 'astronaut_side_by_side.png'} (photo | avatar)")
    return 0


def _demo_photo(temps: dict) -> str | None:
    """The main job on a real portrait, the bundled NASA astronaut photo
    (public domain): its avatar (PNG, SVG) and the photo beside it, written
    to the temporary files ``temps`` (by output name). Returns how the avatar
    was made (the estimator), None after an error it printed."""
    import numpy as np
    from PIL import Image

    from .imageio import SAMPLE_PHOTO, sample_photo

    try:
        photo = sample_photo()
    except (OSError, ValueError) as exc:
        print(f"avatarizer demo: error: the bundled sample portrait {SAMPLE_PHOTO} cannot be read ({exc}); "
              "reinstall the package", file=sys.stderr)
        return None
    _quiet_libraries()
    from .api import Avatarizer

    with Avatarizer() as av:
        _check_stop()  # a stop signal that came while the models loaded
        avatar = av.from_frame(photo)
        how = f"estimator: {av.estimator} ({av.estimator_reason})"
    if avatar is None:
        print("avatarizer demo: no face found in the astronaut photo", file=sys.stderr)
        return None
    Image.fromarray(avatar.render(512, background="white")).save(temps["astronaut_avatar.png"], format="PNG")
    temps["astronaut_avatar.svg"].write_text(avatar.to_svg(512, background="white"), encoding="utf-8")
    h = photo.shape[0]
    pic = avatar.render(h, background="white")[..., :3]
    Image.fromarray(np.concatenate([photo, pic], axis=1)).save(temps["astronaut_side_by_side.png"], format="PNG")
    return how


def _quiet_libraries() -> None:
    """Before MediaPipe loads and OpenCV opens anything: their log lines are
    kept off stderr until the command ends (:mod:`avatarizer.logfilter`:
    MediaPipe's and FFmpeg's by the filter on file descriptor 2, OpenCV's
    own logging silenced; the environment variables still quiet older
    MediaPipe builds)."""
    from .logfilter import FILTER, QUIET

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    FILTER.start()
    QUIET.opencv()


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _StdoutWrites:
    """``sys.stdout`` while a command runs: a write or flush the system
    refuses (stdout on a full disk, ``> /dev/full``) is a :class:`CLIError`
    saying so. The bare "No space left on device" read as the output's own
    write failing, the output written (helper-450). A reader gone
    (``BrokenPipeError``) is left to its own handler; everything else is the
    stream's."""

    def __init__(self, stream):
        self._stream = stream
        self._refused_once = False

    def _refused(self, exc: OSError) -> CLIError:
        """Said once; stdout then points at the null device, so that the
        next flushes (the log filter's, the interpreter's at exit) do not
        fail again (as :func:`_broken_pipe` does)."""
        self._refused_once = True
        _stdout_to_null(self._stream)
        return CLIError(f"its messages could not be written to stdout ({exc.strerror or exc}); what it wrote "
                        "before that is in place")

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._refused(exc) from None

    def write(self, text):
        return len(text) if self._refused_once else self._guarded(self._stream.write, text)

    def flush(self):
        if self._refused_once:
            try:
                return self._stream.flush()  # (into the null device now)
            except OSError:
                return None
        return self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _UsageError(CLIError):
    """A bad option value found after parsing (it depends on another option,
    e.g. the output type): exit status 2, like argparse's own errors."""

    status = 2


#: Exit status when the input video ended before the frame count in its header
#: (the output is written for the decoded part, with a warning).
EXIT_TRUNCATED = 3


class _Signalled(BaseException):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP arrived: unwinds the run so temporary files are removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


#: Temporary files this run created (and has not yet moved into place).
_TEMPS: set[Path] = set()
#: Outputs this run has moved into place (a later failure's message says they were written).
_WRITTEN: list[Path] = []
#: Folders this run created for its output, as the OS resolved them, with their (device, inode):
#: removed again if it fails, when still empty and still the same folder (:func:`_make_folders`).
_DIRS: list[tuple[Path, tuple[int, int]]] = []


def _temp_beside(out: Path, suffix: str) -> Path:
    """A new, unique temporary file in ``out``'s folder (``tempfile.mkstemp``:
    created with O_EXCL, so it can never be an existing file of the user's).
    ``suffix`` keeps the type that writers pick the container by (``.mp4``)."""
    fd, name = tempfile.mkstemp(prefix=".avatarizer-", suffix=suffix, dir=out.parent)
    os.close(fd)
    path = Path(name)
    from ._files import current_umask
    os.chmod(path, 0o666 & ~current_umask())  # mkstemp makes 0600; the output gets the usual mode
    _TEMPS.add(path)
    return path


def _drop_temp(path: Path) -> None:
    """Removes a temporary file this run created (never anything else)."""
    if path in _TEMPS:
        _TEMPS.discard(path)
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _cleanup_temps(failed: bool = True) -> None:
    for path in list(_TEMPS):
        _drop_temp(path)
    _WRITTEN.clear()
    while _DIRS:
        d, made = _DIRS.pop()
        if failed:
            try:
                st = os.lstat(d)
                if (st.st_dev, st.st_ino) == made:  # (not one put in its place since)
                    d.rmdir()  # only when empty: never anything of the user's
            except OSError:
                pass


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and (a.resolve() == b.resolve() or os.path.samefile(a, b))
    except OSError:
        return False


def _check_input(inp: Path) -> None:
    """The input must be an existing regular file: a named pipe or a device
    would block (or never end), a folder is not an image."""
    try:
        mode = inp.stat().st_mode
    except FileNotFoundError:
        raise CLIError(f"no such file: {inp}") from None
    except OSError as exc:
        raise CLIError(f"cannot read {inp}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise CLIError(f"{inp} is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise CLIError(f"{inp} is not a regular file (a named pipe, socket or device); "
                       "give a file on disk")
    if not os.access(inp, os.R_OK):
        raise CLIError(f"cannot read {inp}: permission denied")


def _special_output(out: Path) -> CLIError | None:
    """The error for an output name held by something that is not a file
    (a named pipe, socket or device: ``--overwrite`` would unlink a pipe
    another program reads, or a device node), else None. A link there is
    replaced itself, never what it points to."""
    from ._files import is_special

    if not is_special(out):
        return None
    return CLIError(f"{out} is not a regular file (a named pipe, socket or device); refusing to replace it")


def _check_output(inp: Path | None, out: Path, overwrite: bool) -> None:
    if inp is not None and _same_file(inp, out):
        raise CLIError(f"the output {out} is the input file; refusing to overwrite it")
    if out.is_dir():
        raise CLIError(f"{out} is a directory")
    special = _special_output(out)
    if special is not None:
        raise special
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise CLIError(f"{out} already exists; pass --overwrite to replace it")
    parent = out.parent
    if parent.exists() and not parent.is_dir():
        raise CLIError(f"cannot write {out}: {parent} is a file, not a folder")
    try:
        _make_folders(parent)
    except OSError as exc:
        raise CLIError(f"cannot create the folder {parent}: {exc.strerror or exc}") from None
    # (os.access said yes to root on /proc or a read-only mount: image and video ran their models, a long
    # clip's whole walk, before the write failed)
    _check_writable(out)


def _check_writable(out: Path) -> None:
    """A file can be made in ``out``'s folder (a temporary one, removed at
    once): ``os.access`` says yes on /proc or a read-only mount for root."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=out.parent if str(out.parent) else ".", prefix=".avatarizer-"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}") from None


def _make_folders(folder: Path) -> None:
    """Creates ``folder`` and the missing folders on its way, one level at a
    time, and records each one this run made (:data:`_DIRS`) so that a
    failed run removes those and nothing else. Which ones are missing cannot
    be read off the path as typed: in ``new/../keep`` the user's ``keep``
    does not exist until ``new`` does, and ``link/..`` is the folder above
    the link's target. So each level is made as the OS walks it (a failed
    ``mkdir`` of an existing one is not ours) and recorded as it resolves
    (``os.path.realpath``: links, then ``..``)."""
    parts = folder.parts
    for i in range(1, len(parts) + 1):
        level = Path(*parts[:i])
        if level.is_dir():
            continue
        try:
            level.mkdir()
        except FileExistsError:
            if level.is_dir():  # made meanwhile by someone else: not ours
                continue
            try:  # (a link that loops is that, not "Not a directory": what the input side says of one; helper-450)
                os.stat(level)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(level)) from None
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(level)) from None
        made = Path(os.path.realpath(level))
        st = os.lstat(made)
        _DIRS.append((made, (st.st_dev, st.st_ino)))


def _say(line: str) -> None:
    """Prints one line of what was written: a line break in a file name
    shown escaped, as the error lines show it (it split "wrote" in two)."""
    print(one_line(line))


def _commit(tmp: Path, out: Path, overwrite: bool, inp: Path | None = None) -> None:
    """Moves a finished temporary file to ``out`` (:func:`_commit_all`)."""
    _commit_all([(tmp, out)], overwrite, inp)


def _commit_all(moves: list[tuple[Path, Path]], overwrite: bool, inp: Path | None = None) -> None:
    """Moves finished temporary files to their outputs (``moves``: pairs of
    temporary file and output). Without ``overwrite`` an existing output is
    never replaced, not even one that appeared while this run was working
    (``os.link`` fails on an existing name), and the outputs are moved all
    or none: every one is checked first, and one that appears meanwhile
    takes back those already in place (still this run's files: nothing was
    there before), so ``video --params`` does not leave OUT.mp4 behind an
    error. Never the input. With ``overwrite`` the old files are gone once
    replaced, so nothing is taken back."""
    for _, out in moves:
        if inp is not None and _same_file(inp, out):
            raise CLIError(f"the output {out} is the input file; refusing to overwrite it")
        special = _special_output(out)  # (also one made while this run worked)
        if special is not None:
            done = "" if not _WRITTEN else f" ({', '.join(map(str, _WRITTEN))} written)"
            raise CLIError(f"{special}{done}")
        if not overwrite and (out.exists() or out.is_symlink()):
            raise _appeared(out)
    placed: list[tuple[Path, tuple[int, int]]] = []  # outputs moved (or moving), with their (device, inode)
    try:
        for tmp, out in moves:
            st = os.stat(tmp)
            placed.append((out, (st.st_dev, st.st_ino)))  # (before: a signal may end the move)
            _place(tmp, out, overwrite)
    except BaseException:  # (also a stop signal: an interrupted run writes nothing)
        for out, made in reversed(placed if not overwrite else []):
            with contextlib.suppress(OSError):
                st = os.lstat(out)
                if (st.st_dev, st.st_ino) == made:
                    out.unlink()
        raise
    for tmp, out in moves:
        _drop_temp(tmp)
        _WRITTEN.append(out)


def _place(tmp: Path, out: Path, overwrite: bool) -> None:
    """One move of :func:`_commit_all`: without ``overwrite`` never onto a
    name that exists (:func:`avatarizer.animation.link_new`)."""
    if overwrite:
        from ._files import new_file_mode

        os.chmod(tmp, new_file_mode(out))  # (the permissions of the file it replaces)
        os.replace(tmp, out)
        return
    from .animation import link_new

    try:
        link_new(tmp, out)
    except FileExistsError:
        raise _appeared(out) from None


def _appeared(out: Path) -> CLIError:
    """``out`` exists (it appeared while this run worked, if it was checked
    before): the error, saying truly what this run has written."""
    done = "nothing was written" if not _WRITTEN else \
        f"{', '.join(map(str, _WRITTEN))} {'was' if len(_WRITTEN) == 1 else 'were'} written, {out} was not"
    return CLIError(f"{out} appeared while this command ran; pass --overwrite to replace it, {done}")


@contextlib.contextmanager
def _staged(out: Path, suffix: str, overwrite: bool, inp: Path | None = None):
    """A registered temporary file beside ``out`` (:func:`_temp_beside`) for
    the block to write, moved into place when the block succeeds
    (:func:`_commit`) and removed in every case."""
    tmp = _temp_beside(out, suffix)
    try:
        yield tmp
        _commit(tmp, out, overwrite, inp)
    finally:
        _drop_temp(tmp)


_IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def _image(args) -> int:
    inp, out = Path(args.input), Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise _UsageError(f"unknown output type {out.suffix or '(none)'!r:.40}: use .png, .svg or .pdf")
    if suffix == ".pdf":
        from .render import PDF_MAX_SIZE

        if args.size > PDF_MAX_SIZE:
            raise _UsageError(f"--size {args.size}: a PDF page is at most {PDF_MAX_SIZE} points a side (the PDF limit)")
    _check_settable(args)
    _check_input(inp)
    _check_output(inp, out, args.overwrite)
    _quiet_libraries()
    from .api import Avatarizer
    from .imageio import load_image

    try:
        photo = load_image(inp)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    with Avatarizer(estimator=args.estimator, exaggeration=args.exaggeration, child_head=args.child_head,
                    max_faces=max(4, args.face + 1), attributes=dict(args.set or ())) as av:
        _check_stop()  # a stop signal that came while the models loaded
        avatar = av.from_frame(photo, face_index=args.face)
    if avatar is None:
        raise CLIError(f"no face found in {inp}" + (f" (asked for face {args.face})" if args.face else ""))
    bg = None if args.background == "transparent" else args.background
    if suffix == ".png":
        from PIL import Image

        data = Image.fromarray(avatar.render(args.size, background=bg))
    elif suffix == ".svg":
        data = avatar.to_svg(args.size, background=bg).encode("utf-8")
    else:
        data = avatar.to_pdf(args.size, background=bg)
    with _staged(out, suffix, args.overwrite, inp) as tmp:
        if suffix == ".png":
            data.save(tmp, format="PNG")
        else:
            tmp.write_bytes(data)
    _say(f"wrote {out}")
    if args.attributes:
        print(_attribute_lines(avatar.attributes))
    return 0


def _shown(name: str, v) -> str:
    """An attribute's value as ``image --attributes`` prints it."""
    return ("yes" if v else "no") if isinstance(v, bool) else f"{v:.0f} years" if name == "age" else \
        f"{v:.1f} (Monk scale 1-10)" if name == "skin_tone" else str(v)


def _attribute_lines(attributes) -> str:
    """``image --attributes``: what the attribute model read (and what was
    set), one line each, in the names ``--set`` takes."""
    from .hair import HAT_FUSION_BY, NETWORK_BY, SETTABLE, UNDER_HAT_BY

    if attributes is None:
        return "attributes: none (no attribute model: the auto-artist drew this avatar)"
    lines = []
    for name, entry in attributes.items():
        v, p = entry["value"], entry.get("probability")
        v = _shown(name, v)
        if entry.get("source") == "app":
            m = entry.get("model")
            note = " (set)" if not m else f" (set; the model read {_shown(name, m['value'])}" + (
                f", p {m['probability']:.2f})" if m.get("probability") is not None else ")")
        elif entry.get("drawn_with"):
            note = f" (drawn with the {entry['drawn_with']})"
        else:
            note = f" (p {p:.2f})" if p is not None else ""
            if str(entry.get("decided_by", "")).startswith("artist cues"):  # a beard or bald head H missed
                note = f" (p {p:.2f}, from the artist's cues)"
            elif entry.get("decided_by") in NETWORK_BY:  # a region network's decision (H's with the hat's)
                by = "hat network and the attribute model" if entry["decided_by"] == HAT_FUSION_BY \
                    else entry["decided_by"]
                note = f" (p {p:.2f}, from the {by})"
            elif name == "hair_length" and str(entry.get("decided_by", "")).startswith("tight-crop"):
                # (a tight crop's own network; a baby's rule gives no probability)
                note = f" (p {p:.2f}, from the {entry['decided_by']})" if p is not None else \
                    f" (from the {entry['decided_by']})"
            elif name == "skin_tone" and entry.get("decided_by"):  # (regressed: no probability)
                note = f" (from the {entry['decided_by']})"
            elif (name == "glasses" and (entry.get("decided_by") == UNDER_HAT_BY
                                         or str(entry.get("decided_by", "")).startswith(("a face mask", "fusion")))) \
                    or str(entry.get("decided_by", "")).startswith("not drawn:"):
                # (also the black-and-white photo's rule and the fusion kept by the artist's cues or the model's
                # rank: a bare, maybe near-zero probability was printed with no reason; a review, session 72)
                # sunglasses taken off under a hat or a face mask, a hat not drawn on a face cut by the frame's
                # edge, a beard under a face mask: the model's probabilities said otherwise (the hat read at
                # 0.96 printed "no (p 0.04)" with no reason: a review, session 65)
                note = f" ({entry['decided_by']}; the model's p {p:.2f})" if p is not None else \
                    f" ({entry['decided_by']})"
            elif entry.get("decided_by") in ("the hairstyle drawn", "kept from earlier refreshes"):
                # (the model's probability of the value shown is low: the drawing decided it)
                note = f" (as drawn; the model's p {p:.2f})" if p is not None else " (as drawn)"
        if name not in SETTABLE:
            note += " (read only: not an attribute the app sets)"
        lines.append(f"  {name}: {v}{note}")
        if name == "headwear" and entry.get("kind"):  # the kind drawn (--set headwear_kind=KIND)
            lines.append(f"  headwear_kind: {entry['kind']}" + (" (set)" if entry.get("kind_source") == "app" else ""))
    return "attributes (change one with --set NAME=VALUE):\n" + "\n".join(lines)


#: Where stderr is no terminal (a log file, a pipe), a progress line at most this often (seconds) and at the end
PLAIN_PROGRESS_EVERY_S = 10.0
# the plain progress of the run under way: its t0, when its last line was written, its latest line not written
_plain_progress: dict = {"run": None, "at": None, "latest": None}


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # (no isatty, or closed)
        return False


def _progress(done: int, total: int | None, t0: float, stream=None) -> None:
    """The walk's progress on stderr: a bar redrawn in place (``\\r``) on a
    terminal; elsewhere (a log, a pipe, where the redraws piled up on one
    line) a line of its own every :data:`PLAIN_PROGRESS_EVERY_S` and at
    the last frame."""
    _check_stop()  # once per frame: a stop signal whose exception was lost ends the run here
    import time

    stream = stream or sys.stderr
    now = time.perf_counter()
    el = now - t0
    fps = done / el if el > 0 else 0.0
    if total and done <= total:  # (an estimate: a variable-rate video's can be passed, then just counted)
        frac = done / total
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        eta = (total - done) / fps if fps > 0 else 0.0
        msg = f"[{bar}] {done}/{total} frames  {fps:5.1f} fps  eta {eta:4.0f} s"
    else:
        msg = f"{done} frames  {fps:5.1f} fps"
    if _is_terminal(stream):
        stream.write("\r" + msg)
    else:
        if _plain_progress["run"] != t0:  # (one run at a time)
            _plain_progress.update(run=t0, at=None)
        at = _plain_progress["at"]
        if at is not None and now - at < PLAIN_PROGRESS_EVERY_S and done != total:
            _plain_progress["latest"] = msg  # (the end's line, should no later one be written)
            return
        _plain_progress.update(at=now, latest=None)
        stream.write(msg + "\n")
    stream.flush()


def _progress_end(stream=None) -> None:
    """Ends the progress bar's line on a terminal; elsewhere writes the last
    progress line where it was not written (a truncated input, or a count
    the header overestimated, never reached its total)."""
    stream = stream or sys.stderr
    if _is_terminal(stream):
        stream.write("\n")
    elif _plain_progress["latest"] is not None:
        stream.write(_plain_progress["latest"] + "\n")
    _plain_progress.update(run=None, at=None, latest=None)


class _Rotated:
    """A capture whose frames are turned by ``code`` (``cv2.rotate``): for
    an OpenCV build that reads a file's rotation but cannot apply it."""

    def __init__(self, cap, code: int):
        self.cap, self.code = cap, code

    def read(self):
        import cv2

        ok, frame = self.cap.read()
        return (ok, cv2.rotate(frame, self.code)) if ok and frame is not None else (ok, frame)

    def __getattr__(self, name):
        return getattr(self.cap, name)


class _SquarePixels:
    """A capture whose (upright) frames are stretched to square pixels by
    the sample aspect ratio ``sar`` of the stored picture: along their
    width, or along their height when ``turned`` (a quarter turn put the
    stored width upright)."""

    def __init__(self, cap, sar: float, turned: bool):
        self.cap, self.sar, self.turned = cap, sar, turned

    def read(self):
        import cv2

        ok, frame = self.cap.read()
        if not ok or frame is None:
            return ok, frame
        h, w = frame.shape[:2]
        size = (w, max(1, int(round(h * self.sar)))) if self.turned else (max(1, int(round(w * self.sar))), h)
        shrink = size[0] * size[1] < w * h
        return ok, cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    def __getattr__(self, name):
        return getattr(self.cap, name)


def _upright(cap):
    """``cap`` giving frames as players show them. Phone videos store the
    picture sideways with a rotation (display matrix) in the file, which this
    OpenCV build does not apply unless asked (CAP_PROP_ORIENTATION_AUTO reads
    0): asked to; where that does not take, the frames are turned here by the
    rotation OpenCV reads (CAP_PROP_ORIENTATION_META, degrees clockwise).
    A video with non-square pixels (a sample aspect ratio other than 1:1:
    anamorphic DV and broadcast video, some editors' exports) is stretched
    to square pixels, as players show it: its stored width times the ratio
    (the height, once a quarter turn has put it upright)."""
    import cv2

    meta = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
    if not (cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1) and cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1):
        code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(meta)
        cap = cap if code is None else _Rotated(cap, code)
    num, den = (cap.get(cv2.CAP_PROP_SAR_NUM) or 0), (cap.get(cv2.CAP_PROP_SAR_DEN) or 0)
    sar = num / den if num > 0 and den > 0 else 1.0
    if not 1 / 16 <= sar <= 16 or abs(sar - 1.0) < 1e-3:  # (a wilder ratio is a broken header)
        return cap
    return _SquarePixels(cap, sar, meta in (90, 270))


def _capture(inp: Path):
    """:func:`videoio.capture`, its refusal a :class:`CLIError`."""
    from . import videoio

    try:
        return videoio.capture(inp)
    except OSError as exc:
        raise CLIError(str(exc)) from None


def _check_one_size(inp: Path, max_seconds: float | None) -> None:
    """Refuses a video file whose frames change size before ``max_seconds``
    (:func:`avatarizer.videoio.size_change`): OpenCV's decoder would hand back
    the last frame of the first size for every later one, a frozen picture
    written as if it were the video."""
    from .videoio import size_change

    change = size_change(inp, until=max_seconds)
    if change is not None and not (max_seconds and change[0] >= max_seconds):
        (t, (w0, h0), (w1, h1)) = change
        before = math.floor(t * 100) / 100  # (rounded down: --max-seconds must end before the change)
        raise CLIError(f"{inp}: its frames change size at {t:.3f} s ({w0}x{h0} -> {w1}x{h1}), which this "
                       "decoder cannot follow (it repeats the last frame of the first size); convert it to one "
                       f"size first, e.g. ffmpeg -i IN -vf scale={w0}:{h0} OUT.mp4"
                       + (f", or stop before it with --max-seconds {before:.2f}" if before > 0 else ""))


def _refuse_still(inp: Path) -> None:
    """A :class:`CLIError` when ``inp`` is a still image (``video`` and ``live`` take videos and
    animated images: OpenCV reads a photo as a one-frame video, a 40 ms clip)."""
    from .videoio import still_image

    kind = still_image(inp)
    if kind is not None:
        raise CLIError(f"{inp} is a still image ({kind}), not a video; for a photo use: avatarizer image "
                       f"{shlex.quote(str(inp))}")


def _too_small(source, w: int, h: int) -> CLIError:
    """The refusal of a video whose ``w``x``h`` frames are under :data:`MIN_VIDEO_SIDE` on a side."""
    return CLIError(f"{source} is too small: its frames are {w}x{h} pixels; the shorter side must be at "
                    f"least {MIN_VIDEO_SIDE} to find a face in them")


def _open_video(inp: Path, max_seconds: float | None):
    """(capture, first frame, source fps (30 where the file gives none that is
    sane), frame count (0 if unknown), the frames ``--max-seconds`` makes at
    that rate (None: none), expected total frames (None if unknown), the
    failed reads before the first frame (damaged packets)). The
    last two are estimates, for the progress bar and the truncation check
    only: the fps of a variable-frame-rate file is its average, so the
    video is stopped by its frames' times (:class:`_VideoWalk`)."""
    import cv2
    import numpy as np

    from .imageio import MAX_SIDE
    from .videoio import pictures_only, read_past_damage

    _refuse_still(inp)
    cap = _upright(_capture(inp))
    # (past damaged packets at the start, as the walk reads past them mid-file: one damaged first packet
    # refused a file `live` played; the frames skipped are counted as damaged)
    ok, first, skipped = read_past_damage(cap.read, 0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) \
        if cap.isOpened() else (False, None, 0)
    if not ok or first is None:
        cap.release()
        raise CLIError(f"could not decode {inp} as a video (not a video file, or a codec this OpenCV "
                       "build cannot read)")
    if pictures_only(inp):  # (OpenCV reads the cover art of a song as a one-frame video)
        cap.release()
        raise CLIError(f"{inp} holds no video: its only picture is attached art (a song's cover); "
                       "give a video file")
    h, w = first.shape[:2]
    if max(h, w) > MAX_SIDE:  # (the pipeline refuses such a frame: said of the file, not of an array)
        cap.release()
        raise CLIError(f"{inp}: its frames are {w}x{h} pixels, more than {MAX_SIDE} on a side; scale it down "
                       f"first, e.g. ffmpeg -i IN -vf scale=-2:1080 OUT.mp4")
    if min(h, w) < MIN_VIDEO_SIDE:  # the landmarks run on the frames as they are: no face is found in fewer
        cap.release()
        raise _too_small(inp, w, h)
    try:
        _check_one_size(inp, max_seconds)
    except CLIError:
        cap.release()
        raise
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 30.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    # at least one frame: a limit shorter than a frame still takes the first
    limit = max(1, int(round(max_seconds * fps))) if max_seconds else None
    total = min(count, limit) if count > 0 and limit else (limit or count or None)
    return cap, first, fps, count, limit, total, skipped


#: ``video -o OUT.json|OUT.svg`` refuses before reading the frames where the
#: header's length at ``--fps`` is this much over an animation's frame limit
#: (the header's frame count and average rate are estimates; the frames'
#: own times decide after the walk, as before)
LENGTH_MARGIN = 1.05

#: Longest gap between two frames' times taken as real; longer ones are a
#: broken timestamp and count as one frame interval.
MAX_FRAME_GAP_S = 10.0


def _file_tracker():
    """The tracker options of ``video`` (mp4 and animation outputs): a video file's frames
    come faster than real time, so its identity refreshes are computed by
    the frames that are due (``identity_worker="inline"``, every
    ``identity_every_ms`` of the video's time) and the avatars depend on the
    file alone, not on the machine's speed. With a worker, only the refreshes
    it happened to answer while the file went by were used: on the shared
    clips 2-7 hair readings in 3-34 s, so the first seconds' hairstyle
    stayed (a woman's long hair drawn short for a whole clip)."""
    from .video import TrackerOptions

    return TrackerOptions(identity_worker="inline")


def _frame_rate(rate, fallback: float | None) -> float | None:
    """A frame rate given as a rational string ("30000/1001") or a number, as
    a float; ``fallback`` when it is None, not a rate, or not in (0, 1000]."""
    from fractions import Fraction

    try:
        r = float(Fraction(rate)) if isinstance(rate, str) else float(rate)
    except (TypeError, ValueError, ZeroDivisionError):
        return fallback
    return r if 0 < r <= 1000 else fallback


def _frames_length(max_seconds: float, rate: float) -> float:
    """Where the sound of ``--max-seconds`` is cut: the output's length at
    ``rate`` frames a second when its frames come at that rate, whole
    frames, those less than ``max_seconds`` after the first
    (:class:`_VideoWalk`), at least one, the last shown one frame
    (:func:`_last_shown`) (it was cut at ``max_seconds``: a 1 fps clip's
    second frame, at 1 s of 1.1, was shown a silent 0.9 s; a review,
    session 76). A product a rounding above a whole number of frames is that
    number. (A variable frame rate's last frame before ``max_seconds`` is
    shown one frame too, and the encoder ends the sound with the picture.)"""
    return max(1, math.ceil(max_seconds * rate - 1e-6)) / rate


def _video_start(info) -> float:
    """Seconds from the file's start to its video's first frame (a video that
    starts after its sound); a longer offset than MAX_FRAME_GAP_S is taken as
    a broken timestamp: 0."""
    return info.start if info.start <= MAX_FRAME_GAP_S else 0.0


def _nearest_frame(x: float) -> float:
    """The output frame nearest ``x`` frames from the start, halves up
    (round() took 0.25 and 0.75 at 2 fps to 0, 2); infinity for a
    non-finite ``x``: where :func:`_resampled` places an item, and how it
    counts the frames, as :func:`_rate_of` checks them."""
    return math.floor(x + 0.5) if math.isfinite(x) else math.inf


def _resampled(items: list, times: list, last_duration: float, fps: float, shorter: str = "") -> list:
    """``items`` shown at ``times`` (seconds from the first, increasing; the
    last shown for ``last_duration``) as a constant ``fps`` sequence: each
    item from the output frame nearest its time (as the video writer places
    frames, ``_ConstantRate``) until the next item's; of items nearest the
    same output frame, the one nearest its time (where the video writer keeps
    the later). (The item showing at each
    output frame's exact time, as before, dropped every third frame of a
    30 fps clip whose times are whole milliseconds, 33, 67, 100: each landed
    a third of a millisecond after its output frame.) More frames than an
    animation holds (``animation.MAX_FRAMES``) are refused before any is
    made: two lines 10**10 ms apart at 1000 fps would be 2e10 of them (a
    hang, then out of memory). ``shorter``: how else the user can ask for
    fewer (added to "give a lower --fps")."""
    import bisect

    from . import animation

    seconds = times[-1] + last_duration
    span = seconds * fps
    if not math.isfinite(span) or span > animation.MAX_FRAMES + 0.5:
        raise CLIError(f"{seconds:g} s at {fps:g} fps is {span:,.0f} frames; an animation holds at most "
                       f"{animation.MAX_FRAMES} frames: give a lower --fps{shorter}")
    n = max(1, int(_nearest_frame(span)))
    best: dict[int, int] = {}  # output frame -> the item nearest it of those nearest that frame
    for i, t in enumerate(times):
        slot = max(0, int(_nearest_frame(t * fps)))
        if slot not in best or abs(t * fps - slot) < abs(times[best[slot]] * fps - slot):
            best[slot] = i
    slots = sorted(best)
    return [items[best[slots[max(0, bisect.bisect_right(slots, k) - 1)]]] for k in range(n)]


class _Clock:
    """Each decoded frame's time in seconds on the input file's clock (the
    video's start offset after the sound included): OpenCV's position of the
    frame just read, kept increasing (a missing, repeated or wild timestamp
    becomes one frame interval after the previous one). A timestamp is wild
    when it lies a second beyond ``end``, where the video ends on the file's
    clock by its header (:meth:`avatarizer.videoio.Probe.video_end`: for a
    variable frame rate, the file's whole length when later) or, when that
    is unknown, more than
    ``MAX_FRAME_GAP_S`` after the previous frame: a real pause in a
    variable-frame-rate video (12 s without a frame) keeps its timing."""

    def __init__(self, cap, fps: float, start: float = 0.0, end: float | None = None):
        self.cap, self.step, self.start, self.last = cap, 1.0 / fps, start, None
        self.end = None if not end else float(end) + 1.0

    def _plausible(self, t: float, after: float) -> bool:
        if not math.isfinite(t) or t <= after:
            return False
        return t <= self.end if self.end is not None else t - after <= MAX_FRAME_GAP_S

    def time(self) -> float:
        """The time of the frame read last (call once per frame, after its read)."""
        import cv2

        t = self.start + (self.cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
        if self.last is None:
            t = t if t == self.start or self._plausible(t, self.start) else self.start
        elif not self._plausible(t, self.last):
            t = self.last + self.step
        self.last = t
        return t


class _ConstantRate:
    """Writes frames stamped with times (:class:`_Clock`) as a video of a
    constant ``rate``: each frame is shown from its time until the next
    one's, so a variable-frame-rate input keeps its timing (a frame is
    repeated over a gap, dropped when two fall on one output frame) and a
    video that starts after its sound starts there (its first frame is shown
    from 0). ``written``: output frames so far; ``last``: the time of the
    frame added last."""

    def __init__(self, write, rate: float):
        self._write, self.rate, self.written, self._held = write, rate, 0, None
        self._first: tuple[float, int] | None = None  # the first frame's time and output frame
        self.last: float | None = None

    def _slot(self, t: float) -> int:
        # frames are placed from the first one's output frame: a video half a frame after its
        # sound would otherwise round each time up or down by float noise, dropping every other frame
        t0, s0 = self._first
        return max(0, s0 + int(round((t - t0) * self.rate)))

    def add(self, frame, t: float) -> None:
        if self._first is None:
            self._first = (t, max(0, int(round(t * self.rate))))
        slot = self._slot(t)
        if self._held is not None:
            self._emit(self._held, slot - self.written)  # the held frame up to this one's time
        elif slot > 0:
            self._emit(frame, slot)  # before the first frame: the first frame
        self._held, self.last = frame, t

    @property
    def first(self) -> float | None:
        """The first frame's time (None before it)."""
        return None if self._first is None else self._first[0]

    def finish(self, shown: float | None = None) -> None:
        """Writes the last frame: for ``shown`` seconds (``Probe.last_shown``),
        else (None) one output frame."""
        if self._held is not None:
            n = 1 if shown is None else max(1, self._slot(self.last + shown) - self.written)
            self._emit(self._held, n)
            self._held = None

    def _emit(self, frame, n: int) -> None:
        for _ in range(n):
            _check_stop()
            self._write(frame)
            self.written += 1


#: Output frame sides ``video -o OUT.mp4 --size`` allows (the SDK's frame limits).
MIN_VIDEO_SIDE, MAX_VIDEO_SIDE = 32, 8192


def video_frame_size(width: int, height: int, panels: int, size: int | None) -> tuple[int, int]:
    """One panel's (width, height) of a written video frame (``panels`` side
    by side) for ``--size``: the whole frame's longer side becomes ``size``
    (``size - 1`` when odd), the other side follows the aspect ratio, rounded
    to an even number (4:2:0 needs even sides). ``None``: the source's size."""
    if size is None:
        return width, height
    full_w, full_h = panels * width, height
    even = max(2, size - size % 2)
    s = even / max(full_w, full_h)

    def to_even(v: float) -> int:
        return max(2, 2 * int(round(v / 2)))

    if full_w >= full_h:
        return even // panels if panels > 1 else even, to_even(full_h * s)
    pw = width * s
    return (max(1, int(round(pw))) if panels > 1 else to_even(pw)), even


def _rescaled(avatar, width: int, height: int):
    """``avatar`` placed in its frame resized to ``width`` x ``height`` (its
    face position, box and frame size scaled; the parameters are the same)."""
    import dataclasses

    import numpy as np

    if avatar is None or avatar.face is None:
        return avatar
    from .api import Avatar

    f = avatar.face
    sx, sy = width / f.frame_shape[1], height / f.frame_shape[0]
    tf = np.asarray(f.transform, np.float64) * np.array([[sx], [sy]])
    tf.setflags(write=False)
    x0, y0, x1, y1 = f.box
    face = dataclasses.replace(f, transform=tf, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy),
                               frame_shape=(int(height), int(width)))
    return Avatar(avatar.params, face, stale=avatar.stale, expression=avatar.expression,
                  color_order=avatar.color_order, attributes=avatar.attributes)


def _warn_no_face(face: int, done: int, inp: Path) -> None:
    which = "no face" if face == 0 else f"face {face} (0 = the largest) was not"
    print(f"avatarizer video: warning: {which} found in any of the {done} frames of {inp}; the output "
          "shows no avatar", file=sys.stderr)


def _check_settable(args) -> None:
    """``--set`` needs the attribute model: a usage error (exit 2) with
    ``--estimator artist``, before any model loads."""
    if getattr(args, "set", None) and args.estimator == "artist":
        raise _UsageError("--set needs the attribute model, which --estimator artist does not run")


def _check_applicable(args, kind: str) -> None:
    """A usage error (exit 2) for options given that the output type ``kind``
    (``.mp4``, ``.json``, ``.svg``) would not use, rather than ignoring them."""
    unused = []
    # (their parser defaults are None: given at all, even with the value that is their default, they count)
    if kind == ".mp4":
        unused += [f"--{n}" for n in ("fps", "tolerance", "background") if getattr(args, n) is not None]
        unused += ["--player"] * bool(args.player)
    elif kind in (".json", ".svg"):
        unused += [f"--layout {args.layout}"] * (args.layout is not None)
        unused += ["--player (it plays a Lottie animation: OUT.json)"] * (bool(args.player) and kind == ".svg")
    if unused:
        raise _UsageError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {kind} "
                          "output (--fps, --tolerance, --background: animations; --layout: videos; "
                          "--player: OUT.json)")


def _video(args) -> int:
    import time

    from .live import compose

    inp, out = Path(args.input), Path(args.output)
    # usage errors (exit 2) first, before the input is looked at
    if out.suffix.lower() not in (".mp4", ".json", ".svg"):
        raise _UsageError(f"the output must be an .mp4, .json (Lottie) or .svg (animated SVG) file, "
                          f"got {out.name!r:.80}")
    _check_params_name(args)
    _check_settable(args)
    _check_applicable(args, out.suffix.lower())
    args.layout = args.layout or "overlay"  # (None on the command line: given, it is checked above)
    _check_input(inp)
    if out.suffix.lower() in (".json", ".svg"):
        return _video_animation(args)
    if args.size is not None and not MIN_VIDEO_SIDE <= args.size <= MAX_VIDEO_SIDE:
        raise _UsageError(f"--size for a video is the output frame's longer side, {MIN_VIDEO_SIDE}..{MAX_VIDEO_SIDE} "
                       f"pixels; got {args.size}")
    _check_output(inp, out, args.overwrite)
    _params_output(args, inp, create=False)
    _quiet_libraries()
    import cv2

    from .api import Avatarizer

    cap, first, fps, count, limit, total, skipped = _open_video(inp, args.max_seconds)
    h, w = first.shape[:2]
    side = args.layout == "side-by-side"
    pw, ph = video_frame_size(w, h, 2 if side else 1, args.size)  # one panel, after --size
    if min(pw, ph) < MIN_VIDEO_SIDE:  # (the source's own frames are at least that: _open_video)
        cap.release()
        raise _UsageError(f"--size {args.size} makes {w}x{h} frames {pw}x{ph} pixels"
                          f"{' per panel' if side else ''}; the shorter side must be at least "
                          f"{MIN_VIDEO_SIDE}: give a larger --size")
    scaled = (pw, ph) != (w, h)
    size = (2 * pw if side else pw, ph)
    from . import videoio

    h264 = videoio.available()
    if h264 and videoio.macroblocks(*size) > videoio.MAX_MACROBLOCKS:
        cap.release()
        raise _UsageError(f"{'--size ' + str(args.size) + ' makes' if args.size else 'the input makes'} "
                          f"{size[0]}x{size[1]} frames{' (side by side)' if side else ''}: H.264 holds at most "
                          f"{videoio.MAX_MACROBLOCKS:,} macroblocks a frame (level 6.2, e.g. 8192x4352); "
                          "give a smaller --size")
    info = videoio.probe(inp) if h264 else videoio.Probe()
    out_rate = info.output_rate() or fps  # constant; a variable-rate input is re-timed to it (_ConstantRate)
    start = _video_start(info)
    rate_f = _frame_rate(out_rate, None)
    if rate_f is None:
        out_rate = rate_f = fps
    partial = params_out = encoder = writer = None
    secs = 0.0
    try:
        partial = _temp_beside(out, ".mp4")  # cv2 picks the container by suffix
        if h264:
            # the input's video bitrate, scaled by the pixel count (side by side is twice as wide)
            bitrate = info.video_bitrate and int(info.video_bitrate * (size[0] * size[1]) / (w * h))
            # the sound on the file's clock: up to the video's end (its start offset included)
            encoder = videoio.H264Writer(
                partial, size, out_rate, audio_from=inp, audio_codec=info.audio_codec, bitrate=bitrate,
                max_seconds=start + _frames_length(args.max_seconds, rate_f) if args.max_seconds else None,
                duration=info.sound_limit(start), audio_track=info.audio_track, audio_tracks=info.audio_tracks,
                audio_default=info.audio_default)
            write = encoder.write
        else:
            writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), rate_f, size)
            if not writer.isOpened():
                raise CLIError(f"could not open {out} for writing an mp4 video")
            write = writer.write
        params_out = _params_output(args, inp)
        clock, frames_out = _Clock(cap, fps, start, info.video_end(start)), _ConstantRate(write, rate_f)
        try:
            with Avatarizer(mode="video", color_order="bgr", estimator=args.estimator,
                            exaggeration=args.exaggeration, child_head=args.child_head, max_faces=args.face + 1,
                            attributes=dict(args.set or ()), tracker=_file_tracker()) as av:
                _check_stop()  # a stop signal that came while the models loaded
                t0 = time.perf_counter()  # after model loading: fps is frames per second of work
                walk = _VideoWalk(cap, first, clock, args.max_seconds, total, t0, skipped)
                for frame, t, avatar in walk.avatars(av, args.face, params_out):
                    # the landmarks come from the source frame; --size scales the picture after
                    if scaled:
                        frame = cv2.resize(frame, (pw, ph), interpolation=cv2.INTER_AREA if pw < w
                                           else cv2.INTER_LINEAR)
                        avatar = _rescaled(avatar, pw, ph)
                    frames_out.add(compose(frame, avatar, side), t)
                done, found, frame = walk.done, walk.found, walk.frame
                shown = _last_shown(info, start, frames_out.first, frames_out.last, 1.0 / rate_f,
                                    videoio.read_whole(info, count, limit, done + walk.damaged, frame is None),
                                    args.max_seconds)
                frames_out.finish(shown)
                shown = 1.0 / rate_f if shown is None else shown  # (the last frame's time on screen)
                secs = time.perf_counter() - t0
        finally:
            if writer is not None:
                writer.release()
            cap.release()
        _progress_end()
        if done == 0:
            raise CLIError(f"no frames could be decoded from {inp}")
        expected = videoio.expected_frames(count, info, limit, done + walk.damaged) if frame is None else None
        # (None: --max-seconds stopped it)
        if encoder is not None:
            enc, encoder = encoder, None
            try:
                enc.close()
            except videoio.VideoWriteError as exc:
                raise CLIError(f"could not write {out}: {exc}") from None
            codec = "H.264"
            audio = f"dropped ({info.problem})" if info.problem else enc.audio
        else:
            codec = "MPEG-4 Part 2 (browsers do not play it; install ffmpeg for H.264)"
            audio = "dropped (ffmpeg not found on PATH; install ffmpeg to keep the sound)"
        if params_out is not None:  # both or neither
            params_path = params_out.finish((partial, out), last_ms=1000.0 * shown)
        else:
            _commit(partial, out, args.overwrite, inp)
            params_path = None
    except videoio.VideoWriteError as exc:
        raise CLIError(f"could not write {out}: {exc}") from None
    finally:
        cap.release()
        if encoder is not None:
            encoder.abort()
        if partial is not None:
            _drop_temp(partial)
        if params_out is not None:
            params_out.discard()  # (nothing once finished)
    # the size the file holds: H.264 (4:2:0) pads an odd side by a black row or column; the fallback's
    # MPEG-4 encoder drops one (a 101x77 input was reported as such and written 100x76)
    held = tuple(v + v % 2 if h264 else v - v % 2 for v in size)
    # (the frames written are the output's, at its rate; the faces and the fps the input frames': "6 frames ...
    # a face in 3" read as half the frames without a face)
    n, secs_out = frames_out.written, frames_out.written / rate_f
    # (a short output said "1 frames (0.0 s of video": its length to the hundredth under 10 s)
    length = f"{secs_out:.2f}" if secs_out < 10 else f"{secs_out:.1f}"
    _say(f"wrote {out}: {n} frame{'' if n == 1 else 's'} ({length} s of video, "
          f"{held[0]}x{held[1]}, {args.layout}, "
          f"{codec}), a face in {found} of {done} input frames, {done / secs if secs > 0 else 0.0:.1f} input "
          f"frames/s (model loading excluded); audio {audio}")
    if found == 0:
        _warn_no_face(args.face, done, inp)
    if params_path is not None:
        _say(f"wrote {params_path}: the parameters of {params_out.count} frames")
    return _walk_status(inp, walk, expected)


class _VideoWalk:
    """The input video's frames, from ``first`` on, with their times
    (``clock``) and video-mode avatars, as both ``video`` outputs take them:
    those less than ``max_seconds`` after the first frame's time (the first
    always), the progress shown every 5 frames against ``total`` (an
    estimate), ``--params`` lines written. Only the times stop it: a frame
    count from the average rate of a variable-frame-rate video cut 1.5 s
    of one dense at first to 1.08 s. After the walk, ``done`` frames were
    taken, ``found`` had a face (not a kept one), and ``frame`` is None
    when the input ran out (else ``max_seconds`` stopped it)."""

    def __init__(self, cap, first, clock, max_seconds, total, t0, lost_first: int = 0):
        self.cap, self.frame, self.clock = cap, first, clock
        self.max_seconds, self.total, self.t0 = max_seconds, total, t0
        self.done = self.found = 0
        self.failed_reads = 0  # reads that failed before the frame count was reached, the walk going on after them
        self.lost_first = lost_first  # reads that failed before ``first`` (damaged packets at the start)
        self._span = None  # (the first and the last frame's times)

    @property
    def damaged(self) -> int:
        """Frames lost to failed reads (:func:`avatarizer.videoio.lost_frames`)."""
        from .videoio import lost_frames

        first, last = self._span or (None, None)
        return self.lost_first + lost_frames(self.failed_reads, first, last, self.clock.step, self.done)

    def avatars(self, av, face: int, params_out):
        """Yields ``(frame, time in s, Avatar | None)``."""
        from .videoio import read_past_damage
        t_first = last_ms = None
        while self.frame is not None:
            t = self.clock.time()
            t_first = t if t_first is None else t_first
            if self.max_seconds is not None and t - t_first >= self.max_seconds:
                break
            self._span = (t_first, t)  # (of the frames taken)
            # the time as --params writes it (to the microsecond): an app replaying the file's lines with
            # their time_ms gets these avatars (the float noise of t * 1000, 1400.0000000000002, moved
            # the identity's refreshes by a frame and the API's avatars differed from the CLI's: QA)
            ms = round(t * 1000.0, 3)
            if last_ms is not None and ms <= last_ms:  # (frames under a microsecond apart: still increasing)
                ms = round(last_ms + 0.001, 3)
            last_ms = ms
            avatar = av.from_frame(self.frame, timestamp_ms=ms, face_index=face)
            if avatar is not None and not avatar.stale:
                self.found += 1
            if params_out is not None:
                params_out.add(avatar, self.done, ms)
            yield self.frame, t, avatar
            self.done += 1
            if self.done % 5 == 0 or self.done == self.total:
                _progress(self.done, self.total, self.t0)
            # (a damaged packet mid-file fails a read, and decoding goes on after it: it ended the walk there)
            ok, frame, skipped = read_past_damage(self.cap.read, self.done + self.failed_reads + self.lost_first,
                                                  self.total)
            self.failed_reads += skipped
            self.frame = frame if ok else None


def _walk_status(inp: Path, walk: "_VideoWalk", expected: int | None) -> int:
    """The exit status of a walk over ``inp`` (3 when it was truncated,
    ``expected`` frames announced, or damaged), its warnings printed."""
    return max(_truncation_status(inp, walk.done + walk.damaged, expected), _damage_status(inp, walk.damaged))


def _damage_status(inp: Path, damaged: int) -> int:
    """Warns about frames that could not be decoded mid-file (the frame
    before each was shown on): exit status 3, else 0."""
    if not damaged:
        return 0
    print(f"avatarizer video: warning: {damaged} frame(s) of {inp} could not be decoded (a damaged file); the "
          f"frame before each is shown in its place (exit status {EXIT_TRUNCATED})", file=sys.stderr)
    return EXIT_TRUNCATED


def _last_shown(info, start: float, first: float, last: float | None, step: float, whole: bool,
                max_seconds: float | None) -> float | None:
    """How long the video's last frame (at ``last`` on the file's clock) is
    shown: to the stream's own end (``Probe.last_shown``: an animated GIF's
    last frame lasts what it says), no later than ``max_seconds`` after the
    first frame (at ``first``), where the whole input was read (``whole``:
    see :func:`_read_whole`); None (one frame) where ``--max-seconds``
    stopped the walk or the input is truncated (a damaged file's last
    decoded frame was held to the header's end, its sound not cut)."""
    if not whole or last is None:
        return None
    shown = info.last_shown(start, last, step)
    if max_seconds is not None:
        shown = min(shown, max(step, first + max_seconds - last))
    return shown



def _truncation_status(inp: Path, done: int, expected: int | None) -> int:
    """Warns about a truncated input (see :func:`videoio.expected_frames`): exit status 3, else 0."""
    if expected is None:
        return 0
    print(f"avatarizer video: warning: {inp} ended after {done} of the {expected} frames its header "
          "announces (a truncated or damaged file); the output covers only the decoded part "
          f"(exit status {EXIT_TRUNCATED})", file=sys.stderr)
    return EXIT_TRUNCATED


def params_line(avatar, frame: int, time_ms: float, duration_ms: float | None = None) -> str:
    """One line of ``video --params``: ``{"frame": N, "time_ms": T,
    "duration_ms": D, "face": true|false, "params": [629 numbers] | null}``.
    ``duration_ms``: how long the frame is shown (to the next frame's time;
    the last frame's as the video output holds it), left out where None;
    ``face``: a face was found in this frame; ``params``: the avatar drawn
    on it (also one kept from an earlier frame for up to 0.5 s), ``null``
    where none is (before the first face, or after it was lost).
    ``animate --params`` reads these lines."""
    import json

    import numpy as np

    # (each float32 as the shortest decimal that reads back as the same float32: rounded to 6 places, a value at a
    # rounding edge read back another, and `animate --params` differed from `video -o OUT.json`; a review, session 70)
    params = None if avatar is None else [float(np.format_float_positional(v, unique=True, trim="0"))
                                          for v in np.asarray(avatar.params, np.float32)]
    face = avatar is not None and not avatar.stale
    doc = {"frame": int(frame), "time_ms": round(float(time_ms), 3)}
    if duration_ms is not None:
        doc["duration_ms"] = round(float(duration_ms), 3)
    doc.update(face=face, params=params)
    return json.dumps(doc)


class _ParamsWriter:
    """``--params OUT.jsonl``: one JSON line per input frame, every frame
    (:func:`params_line`), written to a temporary file beside OUT (registered like
    every temporary file of the run, so a failure or a stop signal removes
    it) and moved into place by :meth:`finish`."""

    def __init__(self, path: Path, overwrite: bool, inp: Path | None):
        self.path, self.overwrite, self.inp, self.count = path, overwrite, inp, 0
        self.tmp = _temp_beside(path, ".jsonl")
        self.f = open(self.tmp, "w", encoding="utf-8")
        self.done = False
        self._held = None  # the latest frame's line, written once its duration is known

    def add(self, avatar, frame: int, time_ms: float) -> None:
        if self._held is not None:
            self._write(*self._held, time_ms - self._held[2])
        self._held = (avatar, frame, time_ms)
        self.count += 1

    def _write(self, avatar, frame: int, time_ms: float, duration_ms: float | None) -> None:
        try:
            self.f.write(params_line(avatar, frame, time_ms, duration_ms) + "\n")
        except OSError as exc:  # (a full disk: the error named no file, it was the temporary one beside it)
            raise CLIError(f"could not write {self.path}: {exc.strerror or exc}") from None

    def finish(self, *before: tuple[Path, Path], last_ms: float | None = None) -> Path:
        """Writes the last frame's line (shown ``last_ms``: how long the
        video output holds it), then moves the finished file into place
        (never over an existing file without ``--overwrite``, never over the
        input), together with ``before`` (pairs of temporary file and
        output, moved first): all or none (:func:`_commit_all`)."""
        if self._held is not None:
            self._write(*self._held, last_ms)
            self._held = None
        try:
            self.f.close()
        except OSError as exc:
            raise CLIError(f"could not write {self.path}: {exc.strerror or exc}") from None
        _commit_all([*before, (self.tmp, self.path)], self.overwrite, self.inp)
        self.done = True
        return self.path

    def discard(self) -> None:
        if not self.done:
            self.f.close()
            _drop_temp(self.tmp)


def _check_params_name(args) -> None:
    """``video --params`` must name a .jsonl file: a usage error (exit 2) otherwise."""
    if getattr(args, "params", None) and Path(args.params).suffix.lower() != ".jsonl":
        raise _UsageError(f"--params writes JSON lines: give a .jsonl file, got {Path(args.params).name!r:.80}")


def _params_output(args, inp: Path, create: bool = True):
    if not getattr(args, "params", None):
        return None
    path = Path(args.params)
    _check_params_name(args)
    if Path(args.output).resolve() == path.resolve():
        raise CLIError("--params and -o name the same file")
    _check_output(inp, path, args.overwrite)
    return _ParamsWriter(path, args.overwrite, inp) if create else None


def _animation_options(args, out: Path):
    from .animation import Animation, output_format

    try:
        output_format(out)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    bg = None if args.background in (None, "transparent") else args.background  # (None: not given)
    size = args.size or 512
    return lambda fps: Animation(size, fps=fps, tolerance=args.tolerance, background=bg)


def _video_animation(args) -> int:
    """``video IN -o OUT.json|OUT.svg``: the performance as a vector animation."""
    import time

    from .animation import _player_page

    inp, out = Path(args.input), Path(args.output)
    make = _animation_options(args, out)
    html = out.with_suffix(".html") if args.player else None
    _check_output(inp, out, args.overwrite)
    if html is not None:
        _check_output(inp, html, args.overwrite)
    _params_output(args, inp, create=False)
    _quiet_libraries()
    from .api import Avatarizer

    cap, frame, src_fps, count, limit, total, skipped = _open_video(inp, args.max_seconds)
    from . import videoio

    info = videoio.probe(inp)
    # default: the rate an mp4 output is written at (a variable-frame-rate input's base rate, where every
    # frame time fits, not OpenCV's average rate: 18.75 fps resampled a 30 fps phone clip's frames)
    src_rate = _frame_rate(info.output_rate(), src_fps)
    fps = float(args.fps or src_rate)
    anim = make(fps)
    from . import animation

    # the video stream's own frame count (ffprobe: its nb_frames or its own duration; not OpenCV's count,
    # which a container without one works out from the whole file's length, a longer sound track included)
    known = min(info.video_frames, limit) if info.video_frames and limit else info.video_frames
    if known and known / src_fps * fps > animation.MAX_FRAMES * LENGTH_MARGIN:
        # (refused before the walk: the check after it, on the frames' own times, came after minutes of work)
        cap.release()
        raise CLIError(f"{inp} is about {known / src_fps:g} s (by its header): at {fps:g} fps that is about "
                       f"{known / src_fps * fps:,.0f} frames; an animation holds at most {animation.MAX_FRAMES} "
                       f"frames: give a lower --fps or --max-seconds")
    frames: list = []  # parameters per input frame (None: no face yet)
    times: list = []  # each input frame's time, seconds after the first one's
    params_out = None
    staged: list[Path] = []  # the temporary files of the outputs, moved into place together
    start = _video_start(info)
    clock = _Clock(cap, src_fps, start, info.video_end(start))
    try:
        params_out = _params_output(args, inp)
        t0 = time.perf_counter()
        try:
            with Avatarizer(mode="video", color_order="bgr", estimator=args.estimator,
                            exaggeration=args.exaggeration, child_head=args.child_head, max_faces=args.face + 1,
                            attributes=dict(args.set or ()), tracker=_file_tracker()) as av:
                _check_stop()  # a stop signal that came while the models loaded
                walk = _VideoWalk(cap, frame, clock, args.max_seconds, total, t0, skipped)
                for _, t, avatar in walk.avatars(av, args.face, params_out):
                    times.append(t)
                    frames.append(avatar.params if avatar is not None else (frames[-1] if frames else None))
                done, found, frame = walk.done, walk.found, walk.frame
        finally:
            cap.release()
        _progress_end()
        first = next((p for p in frames if p is not None), None)
        if first is None:
            which = "no face" if args.face == 0 else f"face {args.face} (0 = the largest) not"
            raise CLIError(f"{which} found in any of the {done} frames of {inp}")
        frames = [first if p is None else p for p in frames]
        # the header's rate, or the frames' own where it would not show each of them (as animate takes the
        # lines' time_ms, _rate_of): a clip of 24 then 30 fps, whose header's base rate (120) is over
        # videoio.MAX_FITTED_FPS, was written at its average rate, 27.2 fps, two of its frames never shown, while
        # animate on the same run's --params kept all 60 at 30 fps (a review, session 65)
        rate = None if args.fps else _rate_of([1000.0 * t for t in times])
        if rate is not None and rate > fps * (1.0 + 1e-6):
            fps = src_rate = min(max(rate, animation.MIN_FPS), animation.MAX_FPS)
            anim = make(fps)
        # (the animation starts with the video's first frame)
        last = _last_shown(info, start, times[0], times[-1], 1.0 / src_rate,
                           videoio.read_whole(info, count, limit, done + walk.damaged, frame is None),
                           args.max_seconds)
        last = 1.0 / src_rate if last is None else last
        try:
            shown = _resampled(frames, [t - times[0] for t in times], last, fps, " or --max-seconds")
        except CLIError as exc:
            if params_out is None:
                raise
            # (refused on the frames' own times, after the whole walk: the finished parameters were deleted
            # with the error; they are kept, and animate makes the animation from them at a rate that fits)
            kept = params_out.finish(last_ms=1000.0 * last)
            raise CLIError(f"{exc}; the parameters of its {params_out.count} frames are in {kept} "
                           f"(`avatarizer animate --params {kept} -o OUT --fps N` makes the animation from them)") from None
        n_out = len(shown)
        anim.extend(shown)
        # the animation, the player page and the parameters are written to temporary files and moved into place
        # together, all or none (_commit_all), as OUT.mp4 and its --params are: the animation was moved in first,
        # and a --params file that appeared meanwhile left it behind the error (a review, session 76)
        anim_tmp = _temp_beside(out, out.suffix)
        staged.append(anim_tmp)
        _write_temp(anim.pieces_for(out), anim_tmp)
        st = anim.stats()
        wrote = (f"wrote {out}: {n_out} frames at {fps:g} fps ({n_out / fps:.1f} s), a face in {found} of {done} "
                 f"input frames; {st['tracks']} shapes, {st['geometry_keyframes']} path keyframes within "
                 f"{_within(anim)} at {anim.width}x{anim.height}; {anim_tmp.stat().st_size / 1e6:.2f} MB")
        moves = [(anim_tmp, out)]
        if html is not None:
            # (the page shows frame 0 at the video's first frame: its time on the file's clock; the file just
            # written is embedded as it is, not parsed again, and the animation is let go first)
            size, anim, frames, shown = (anim.width, anim.height), None, None, None
            html_tmp = _temp_beside(html, html.suffix)
            staged.append(html_tmp)
            _write_temp(_player_page(anim_tmp.read_text(encoding="utf-8"), out, *size, inp, html,
                                     video_start=times[0]), html_tmp)
            moves.append((html_tmp, html))
        if params_out is not None:
            params_out.finish(*moves, last_ms=1000.0 * last)
        else:
            _commit_all(moves, args.overwrite, inp)
        _say(wrote)
        if html is not None:
            _say(f"wrote {html}: the animation next to {inp} (open it in a browser)")
        if params_out is not None:
            _say(f"wrote {params_out.path}: the parameters of {params_out.count} frames")
    finally:
        for tmp in staged:
            _drop_temp(tmp)  # (nothing once moved into place)
        if params_out is not None:
            params_out.discard()  # (nothing once finished)
    read = done + walk.damaged
    return _walk_status(inp, walk, videoio.expected_frames(count, info, limit, read) if frame is None else None)


def _within(anim) -> str:
    """How close the written animation is to the scene, for the command's
    summary: the tolerance, or what holds when it is under the finest
    coordinate step (``--tolerance 0`` is not 0 px: 1/128 px)."""
    bound = anim.error_bound
    if bound <= anim.tolerance:
        return f"{anim.tolerance:g} px"
    return (f"1/{1 / bound:g} px (the finest coordinate step, more than --tolerance {anim.tolerance:g}: "
            "every vertex kept, a keyframe on every frame but exactly linear runs)")


def _write_text(text, out: Path, overwrite: bool, inp: Path | None = None) -> None:
    """Writes ``text`` (a str or an iterable of str pieces, written as they
    come) to a registered temporary file beside ``out`` and moves it into
    place (:func:`_commit`): a failure or a stop signal at any point leaves
    no temporary file and never replaces a file without ``overwrite``."""
    with _staged(out, out.suffix, overwrite, inp) as tmp:
        _write_temp(text, tmp)


def _write_temp(text, tmp: Path) -> None:
    """Writes ``text`` (a str or an iterable of str pieces, written as they
    come) into the temporary file ``tmp`` (:func:`_temp_beside`)."""
    with open(tmp, "w", encoding="utf-8") as f:
        for piece in ((text,) if isinstance(text, str) else text):
            f.write(piece)


def _write_animation(anim, out: Path, overwrite: bool, inp: Path | None = None) -> dict:
    """Writes the animation (temp file beside OUT, then moved into place) and returns its stats."""
    _write_text(anim.pieces_for(out), out, overwrite, inp)
    return anim.stats()


def _rate_of(times: list, last_ms: float | None = None) -> float | None:
    """Frames per second of lines stamped with ``time_ms`` (as ``video
    --params`` writes them), or None when they are not all stamped, increasing.
    Their average rate (taken as a whole or an NTSC rate, n * 1000/1001, within
    what the stamps' rounding leaves of it: a tick at either end, a whole
    millisecond where every stamp is one, else a microsecond, to which ``video
    --params`` rounds them), where each line has a frame of its own at it,
    the last shown for its ``last_ms`` (its ``duration_ms``) included; else
    the rate at which every line has one, as ``video -o OUT.json`` writes a
    variable frame rate's frames: the closest pair's, or the last line's
    ``last_ms`` where shorter (``videoio.gap_rate`` of the gap in those
    ticks), where that is at most ``videoio.MAX_FITTED_FPS`` and above the
    average; else the average (a 30 fps run beside a 10 fps one was
    resampled at their average, 12 fps, and lost 11 of 36 frames). A 30 fps
    run stamped in whole milliseconds, 33, 67, 100, was taken at its closest
    pair's 1000/33 = 30.303 fps, 3 lines in 300 held two frames, and a GIF's
    40 ms last frame after 100 ms ones was resampled at 10 fps and never
    shown (a review, session 67). (Any rate: lines less than a millisecond
    apart, more than 1000 a second, were taken as unstamped, one frame each,
    also where ``--fps`` asked to resample them.)"""
    if len(times) < 2 or any(t is None for t in times) or any(b <= a for a, b in zip(times, times[1:])):
        return None
    span = times[-1] - times[0]
    fps = (len(times) - 1) * 1000.0 / span
    if not (math.isfinite(fps) and fps > 0):
        return None
    last = last_ms if last_ms is not None and math.isfinite(last_ms) and last_ms > 0 else None
    pair = min(b - a for a, b in zip(times, times[1:]))
    gap = min(pair, last) if last is not None else pair
    whole_ms = all(float(t).is_integer() for t in [*times, gap])
    # (whole rates only from 1 fps up: lines half an hour apart, 0.00056 fps, were rounded to 0; 60 fps
    # stamped in whole milliseconds averaged 60.004)
    tol = max(1e-3, fps * (1.0 if whole_ms else 1e-3) / span)
    for rate in (float(round(fps)), round(fps * 1.001) * 1000 / 1001):
        if rate >= 1 and abs(fps - rate) < tol:
            fps = rate
            break
    # each line's output frame and the frame count, in seconds from the first line as _resampled takes them
    # (from _animate), halves up
    seconds = [(t - times[0]) / 1000.0 for t in times]
    ends = [*seconds, seconds[-1] + (last / 1000.0 if last is not None else 1.0 / fps)]
    slots = [_nearest_frame(s * fps) for s in ends]
    if all(b > a for a, b in zip(slots, slots[1:])):
        return fps
    from fractions import Fraction

    from .videoio import MAX_FITTED_FPS, gap_rate

    def fit(gap):
        # (a gap of 5e-324 ms, under a microsecond, is no rate to fit: round() of an infinite rate raised
        # OverflowError before; nor is one of 1e306 ms, whose microseconds round() cannot make an integer of)
        if whole_ms:
            return gap_rate(round(gap), Fraction(1, 1000)) if 1 <= gap < 1e15 else None
        return gap_rate(round(gap * 1000.0), Fraction(1, 10**6)) if 0.5 <= gap * 1000.0 < 1e18 else None

    fitted = fit(gap)
    if gap < pair and (fitted is None or fitted > MAX_FITTED_FPS):
        # (a last line shown for less than 1/60 s: the lines' own closest pair, not their average, which
        # lost inner lines; a review, session 67)
        fitted = fit(pair)
    return float(fitted) if fitted is not None and fps < fitted <= MAX_FITTED_FPS else fps


#: ``animate --params`` of one stamped line lasting 1/60-1/10 s (a one-frame video's): drawn at its own rate
ONE_FRAME_MIN_FPS = 10.0


def _animate(args) -> int:
    """``animate --params IN.jsonl -o OUT.json|OUT.svg``."""
    from .animation import read_params_jsonl

    inp, out = Path(args.params), Path(args.output)
    make = _animation_options(args, out)  # (a bad output type: a usage error, first)
    _check_input(inp)  # a named pipe would block forever
    _check_output(inp, out, args.overwrite)
    times: list = []
    durations: list = []
    try:
        frames = read_params_jsonl(inp, times, durations)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CLIError(str(exc)) from None
    rate = _rate_of(times, durations[-1] if durations else None)
    from .animation import MAX_FPS, MIN_FPS

    one_stamped = len(times) == 1 and times[0] is not None and durations and durations[0]
    # (one stamped line of a video frame's duration, 10-60 fps: its rate, as `video -o OUT.json` draws a one-frame
    # video; at 30 fps a 40 ms line lasted 33 ms; a review, session 70. A longer still: 30 fps, for its duration)
    from .videoio import MAX_FITTED_FPS

    own = 1000.0 / durations[0] if one_stamped else None
    own = own if own is not None and ONE_FRAME_MIN_FPS <= own <= MAX_FITTED_FPS else None
    use = rate if rate is not None else own
    anim = make(float(args.fps or (min(max(use, MIN_FPS), MAX_FPS) if use is not None else 30.0)))
    if one_stamped:  # one stamped line: it lasts its duration_ms (it was one frame, 1/30 s)
        anim.extend(_resampled(frames, [0.0], durations[0] / 1000.0, anim.fps))
    elif rate is None:  # lines without times: one frame each
        anim.extend(frames)
    else:  # stamped lines (a variable frame rate too): placed by their times (_resampled)
        # the last line lasts what it says (video --params: as long as the video output holds it), else a frame
        last = durations[-1] / 1000.0 if durations and durations[-1] else 1.0 / rate
        # (lines counted by their place: a null line repeats the array of the line before it)
        shown = _resampled(list(range(len(frames))), [(t - times[0]) / 1000.0 for t in times], last, anim.fps)
        lost = len(frames) - len(set(shown))
        # (lines nearest an output frame past the last: the length, rounded to whole frames, ends before them)
        late = sum(_nearest_frame((t - times[0]) / 1000.0 * anim.fps) >= len(shown) for t in times)
        shown = [frames[i] for i in shown]
        if lost - late:  # (lines under a frame apart: more than MAX_FPS a second, or a lower --fps asked for)
            print(f"avatarizer animate: warning: {lost - late} of {len(frames)} lines are not shown: they come "
                  f"less than a frame apart at {anim.fps:g} fps" + ("" if args.fps else
                  " (the highest rate; is time_ms in milliseconds?)" if rate > MAX_FPS else ""),
                  file=sys.stderr)
        if late:
            print(f"avatarizer animate: warning: {late} of {len(frames)} lines are not shown: they come after "
                  f"the animation's last frame ({len(shown)} frames at {anim.fps:g} fps: the lines' length "
                  "rounded to whole frames)", file=sys.stderr)
        anim.extend(shown)
    st = _write_animation(anim, out, args.overwrite, inp)
    _say(f"wrote {out}: {len(anim)} frames at {anim.fps:g} fps; {st['tracks']} shapes, "
          f"{st['geometry_keyframes']} path keyframes within {_within(anim)} at "
          f"{anim.width}x{anim.height}; {out.stat().st_size / 1e6:.2f} MB")
    return 0


class _NoDisplay(CLIError):
    """No window can be opened: exit status 2 (``live.EXIT_NO_DISPLAY``)."""

    status = 2


def _live(args) -> int:
    """``live [SOURCE]``: the preview window (see :mod:`avatarizer.live`)."""
    from . import live

    _check_settable(args)
    shot = Path(args.screenshot) if args.screenshot else None
    if shot is not None and shot.suffix.lower() != ".png":
        raise _UsageError(f"--screenshot writes a PNG: give a .png file, got {shot.name!r:.80}")
    try:
        source = live.parse_source(args.source)
    except ValueError as exc:  # (an empty source, a camera index beyond a C int: a usage error)
        raise _UsageError(str(exc)) from None
    if isinstance(source, str) and not live.is_stream(source):
        _check_input(Path(source))
        from .videoio import pictures_only

        if pictures_only(Path(source)):  # (as video refuses it: a song's cover flashed up as a one-frame video)
            raise CLIError(f"{source} holds no video: its only picture is attached art (a song's cover); "
                           "give a video file")
        _refuse_still(Path(source))  # (as video refuses it: a photo was shown as a one-frame video)
        _check_one_size(Path(source), args.max_seconds)
    src_file = Path(source) if isinstance(source, str) else None  # (a file or a stream's URL; a camera: None)
    if shot is not None:
        _check_output(src_file, shot, args.overwrite)  # (its folder writable: found only after the preview before)
    why = live.display_problem()
    if why is not None:
        raise _NoDisplay(why)
    _quiet_libraries()
    import cv2

    from .api import Avatarizer

    if isinstance(source, str) and "://" in source:  # a network stream: with timeouts, said apart
        try:
            cap = live.open_url(source)
        except live.SourceError as exc:
            raise CLIError(str(exc)) from None
    elif live.is_camera_device(source) and sys.platform.startswith("linux"):
        cap = cv2.VideoCapture(source, cv2.CAP_V4L2)  # (a camera's node: V4L2 alone, not every backend's probe)
    else:
        cap = cv2.VideoCapture(source) if live.is_stream(source) else _capture(Path(source))
    if not cap.isOpened():
        cap.release()
        raise CLIError(f"could not open {live.describe(source)}" + (
            " (no such camera, or it is in use)" if live.is_stream(source) and "://" not in str(source) else
            " (not a video, or a codec or protocol this OpenCV build cannot read)"))
    if live.is_stream(source):
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # show the newest frame, not a queue of old ones
    if not (isinstance(source, int) or live.is_camera_device(source)):
        # a phone video's rotation and non-square pixels applied, a file's or a URL's (an http URL of a phone
        # video was shown sideways: a review, session 66)
        cap = _upright(cap)
    if not live.is_stream(source):  # (as `video` refuses it, before the models load: they said "an array of
        # shape (24, 24, 3)" after the window opened)
        w, h = (int(cap.get(p) or 0) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if 0 < min(w, h) < MIN_VIDEO_SIDE:
            cap.release()
            raise _too_small(source, w, h)
    try:
        with Avatarizer(mode="video", color_order="bgr", estimator=args.estimator,
                        exaggeration=args.exaggeration, child_head=args.child_head, max_faces=args.face + 1,
                        attributes=dict(args.set or ())) as av:
            _check_stop()  # a stop signal that came while the models loaded
            res = live.run(av, cap, source, side=args.layout == "side-by-side", face=args.face,
                           max_frames=args.frames, max_seconds=args.max_seconds)
    finally:
        cap.release()
    if res.shown == 0 and res.stopped_by in ("end", "read-error"):
        raise CLIError(f"could not read a frame from {live.describe(source)}")
    if res.shown == 0:  # (quit before the first frame came: no failure)
        print(f"stopped before the first frame of {live.describe(source)} came ({res.stopped_by})")
        if shot is not None:
            raise CLIError(f"no frame was shown: no screenshot written to {shot}")
        return 0
    print(f"shown {res.shown} frames of {live.describe(source)} in {res.seconds:.1f} s, {res.fps:.1f} fps "
          f"(model loading excluded), a face in {res.found}; stopped: {res.stopped_by}")
    if shot is not None:
        ok, png = cv2.imencode(".png", res.last)
        if not ok:
            raise CLIError(f"could not encode the screenshot {shot}")
        try:
            with _staged(shot, ".png", args.overwrite, src_file) as tmp:  # (checked again as it is moved)
                tmp.write_bytes(png.tobytes())
        except OSError as exc:  # (it named the temporary file beside it, which the user never chose)
            raise CLIError(f"cannot write {shot}: {exc.strerror or exc}") from None
        h, w = res.last.shape[:2]
        _say(f"wrote {shot}: the last frame shown ({w}x{h})")
    if res.stopped_by == "read-error":
        print(f"avatarizer live: warning: {live.describe(source)} stopped sending frames", file=sys.stderr)
    status = 0  # (a cut or damaged file: exit status 3, as `video` gives for the same file)
    if res.expected is not None:
        print(f"avatarizer live: warning: {source} ended after {res.shown + res.damaged} of the {res.expected} "
              f"frames its header announces (a truncated or damaged file; exit status {EXIT_TRUNCATED})",
              file=sys.stderr)
        status = EXIT_TRUNCATED
    if res.damaged:
        print(f"avatarizer live: warning: {res.damaged} frame(s) of {source} could not be decoded (a damaged "
              f"file; exit status {EXIT_TRUNCATED})", file=sys.stderr)
        status = EXIT_TRUNCATED
    return status


def _bench(args) -> int:
    _quiet_libraries()
    from .bench import command

    return command(args)


#: the most pixels a side the sheet's formats hold (WebP's, and libjpeg's 65500; PNG has none that counts here)
SHEET_MAX_SIDE = {".webp": 16383, ".jpg": 65500, ".jpeg": 65500}


def _render_samples(args) -> int:
    from .gallery import MAX_SHEET_PIXELS, gallery, sheet_size

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise _UsageError(f"unknown output type {out.suffix or '(none)'!r:.40}: use .png, .jpg or .webp")
    w, h = sheet_size(args.n, args.size)
    if w * h > MAX_SHEET_PIXELS:
        raise _UsageError(f"-n {args.n} --size {args.size} makes a {w}x{h} sheet, more than "
                          f"{MAX_SHEET_PIXELS:,} pixels: ask for fewer or smaller avatars")
    side = SHEET_MAX_SIDE.get(out.suffix.lower())
    if side is not None and max(w, h) > side:  # (the encoder refused it after every avatar was drawn)
        raise _UsageError(f"-n {args.n} --size {args.size} makes a {w}x{h} sheet; {out.suffix.lower()} "
                          f"images are at most {side} pixels a side: ask for fewer or smaller avatars, or "
                          "write a .png")
    _check_output(None, out, args.overwrite)
    with _staged(out, out.suffix, args.overwrite) as tmp:
        gallery(tmp, n=args.n, size=args.size, seed=args.seed)
    _say(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="avatarizer", description="Parametric vector avatars from portraits.")
    ap.add_argument("--version", action="version", version=f"avatarizer {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="render the demo outputs and say where they are")
    d.add_argument("-o", "--output", default="out/demo", help="output folder (default out/demo)")
    d.add_argument("--overwrite", action="store_true", help="replace the demo's files if the folder has them")
    d.set_defaults(func=_demo)
    s = sub.add_parser("render-samples", help="a contact sheet of sampled avatars")
    s.add_argument("-o", "--output", default="gallery.png", metavar="OUT",
                   help="the contact sheet: OUT.png, OUT.jpg or OUT.webp (default gallery.png)")
    s.add_argument("-n", type=_count, default=24, help="how many avatars (1..1000, default 24)")
    s.add_argument("--size", type=_positive_int, default=256, help="tile size in pixels, 1..16384 (default 256)")
    s.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number >= 0 (default 0)")
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=_render_samples)

    im = sub.add_parser("image", help="a photo → avatar as PNG, SVG or PDF",
                        description="Finds a face in a photo (the largest, or --face K) and writes its avatar.")
    im.add_argument("input", metavar="IN", help="a photo (any format Pillow reads but icons, BLP and EPS)")
    im.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.png, OUT.svg or OUT.pdf")
    im.add_argument("--size", type=_positive_int, default=512,
                    help="pixels (PNG) or points (SVG/PDF), 1..16384 (a PDF page at most 14400); default 512")
    im.add_argument("--background", type=_background, default="white",
                    help="white (default), transparent, black or a hex colour #rrggbb (#rgb, #rgba, #rrggbbaa)")
    im.add_argument("--face", type=_face_index, default=0, metavar="K",
                    help=f"which face, 0 = the largest (default), up to {_MAX_FACE}")
    im.add_argument("--estimator", choices=("auto", "hybrid", "model", "artist"), default="auto",
                    help=_ESTIMATOR_HELP)
    im.add_argument("--exaggeration", type=_likeness, default=None, metavar="K",
                    help="likeness: 1.0 faithful ... 2.0 caricature (default: 1.25, where identity peaks)")
    _set_argument(im)
    im.add_argument("--attributes", action="store_true",
                    help="also print what the attribute model read (glasses, beard, hair colour, skin tone, ...)")
    im.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    im.set_defaults(func=_image)

    v = sub.add_parser("video", help="a video → the same video with a live avatar",
                       description="Tracks the largest face (or --face K) through a video and draws its "
                                   "avatar over the face (overlay) or beside the frame (side-by-side). "
                                   "The input's sound is copied when ffmpeg is on PATH, else dropped "
                                   "(with a note). --size means the output frame's longer side for "
                                   "OUT.mp4 and the animation's width and height for OUT.json|OUT.svg.")
    v.add_argument("input", metavar="IN", help="a video file OpenCV can decode, or an animated GIF, PNG or WebP")
    v.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="OUT.mp4 (video), OUT.json (Lottie animation) or OUT.svg (animated SVG)")
    v.add_argument("--layout", choices=("overlay", "side-by-side"), default=None,
                   help="OUT.mp4 only: the avatar over the face (overlay, the default) or beside the frame")
    v.add_argument("--max-seconds", type=_seconds, default=None, metavar="S",
                   help="stop after S seconds of video (at least one frame)")
    v.add_argument("--face", type=_face_index, default=0, metavar="K",
                   help="which face to follow: the K-th largest in each frame, 0 = the largest (default); "
                        f"up to {_MAX_FACE}. Frames without a K-th face count as frames without a face "
                        "(the last avatar is kept for 0.5 s, then none is drawn)")
    v.add_argument("--estimator", choices=("auto", "hybrid", "model", "artist"), default="auto",
                    help=_ESTIMATOR_HELP)
    v.add_argument("--exaggeration", type=_likeness, default=None, metavar="K",
                   help="likeness: 1.0 faithful ... 2.0 caricature (default: 1.25, where identity peaks)")
    _set_argument(v)
    v.add_argument("--params", metavar="OUT.jsonl",
                   help='also write one JSON line per frame, {"frame": N, "time_ms": T, "duration_ms": D, '
                        '"face": true|false, "params": [629 numbers] or null where the frame shows no avatar} '
                        '(D: how long the frame is shown)')
    _animation_arguments(v, fps_help="frame rate of a .json/.svg animation (default: the video's; a "
                         "variable-frame-rate video's base rate, as for an mp4)",
                         size_help="OUT.mp4: the output frame's longer side in pixels (side by side: of "
                                   "both panels together), the other side in proportion, both even "
                                   "(default: the input's size); OUT.json|OUT.svg: the animation's width "
                                   "and height (default 512; vector, scales to any size)",
                         size_default=None)
    v.add_argument("--player", action="store_true",
                   help="with OUT.json: also write OUT.html, the animation next to the source video")
    v.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the input)")
    v.set_defaults(func=_video)

    lv = sub.add_parser("live", help="a preview window: camera or video with the avatar, live",
                        description="Shows a camera (SOURCE = its index, default 0), a video file or a "
                                    "stream URL with the avatar drawn over the face (overlay) or beside "
                                    "the frame (side-by-side) and the measured fps; q or Esc quits. A "
                                    "file plays at its own frame rate. Needs a display: on a machine "
                                    "without one run it under xvfb-run -a (exit status 2 otherwise).")
    lv.add_argument("source", nargs="?", default=None, metavar="SOURCE",
                    help="camera index (default 0), or a video file or URL OpenCV can open")
    lv.add_argument("--layout", choices=("overlay", "side-by-side"), default="overlay",
                    help="the avatar over the face (overlay, the default) or beside the frame")
    lv.add_argument("--face", type=_face_index, default=0, metavar="K",
                    help="which face to follow: the K-th largest in each frame, 0 = the largest (default); "
                         f"up to {_MAX_FACE}")
    lv.add_argument("--frames", type=_frame_count, default=None, metavar="N", help="stop after N frames shown")
    lv.add_argument("--max-seconds", type=_seconds, default=None, metavar="S",
                    help="stop after S seconds (wall clock, after the models are loaded)")
    lv.add_argument("--screenshot", metavar="PATH.png", default=None,
                    help="write the last frame shown (with the avatar and the fps) as a PNG at the end")
    lv.add_argument("--estimator", choices=("auto", "hybrid", "model", "artist"), default="auto",
                    help=_ESTIMATOR_HELP)
    lv.add_argument("--exaggeration", type=_likeness, default=None, metavar="K",
                    help="likeness: 1.0 faithful ... 2.0 caricature (default: 1.25, where identity peaks)")
    _set_argument(lv)
    lv.add_argument("--overwrite", action="store_true", help="replace an existing --screenshot file")
    lv.set_defaults(func=_live)

    an = sub.add_parser("animate", help="a parameter sequence → Lottie JSON or animated SVG",
                        description="Exports any sequence of avatars (one JSON line of 629 parameters per "
                                    "frame, as `video --params` writes) as a vector animation.")
    an.add_argument("--params", required=True, metavar="IN.jsonl",
                    help="one frame per line: a list of 629 numbers, or an object with \"params\" (null: no "
                         "avatar in that frame, the last one is held)")
    an.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.json (Lottie) or OUT.svg (SMIL)")
    _animation_arguments(an, fps_help="frames per second of the lines (default: their \"time_ms\" rate, as "
                                      "video --params writes it, 0.001 to 1000, else 30)")
    an.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    an.set_defaults(func=_animate)

    b = sub.add_parser("bench", help="per-stage and end-to-end latency",
                       description="Times every pipeline stage and the whole frame-to-avatar path on real "
                                   "frames (512x512 input, 256 px render), with MediaPipe landmarks alone "
                                   "as the baseline, in the same run.")
    from .bench import add_arguments

    add_arguments(b)
    b.set_defaults(func=_bench)
    return ap


def _int_in(lo: int, hi: int | None, what: str, out_of_range: str):
    """An argparse type: a whole number (else "expected WHAT") from ``lo`` to
    ``hi`` (None: no upper bound), else ``out_of_range`` formatted with ``v``
    (the number) and ``text`` (as given): :func:`avatarizer.checks.int_arg`."""
    from .checks import int_arg

    return int_arg(lo, hi, not_int=f"expected {what}, got {{text!r:.60}}", out_of_range=out_of_range)


def _setting(text: str) -> tuple[str, object]:
    """An argparse type for ``--set NAME=VALUE``: an attribute the avatar
    shows whatever the regressor decides (``Options.attributes``): yes/no for
    beard, moustache, headwear and bald, a number for age and skin_tone, a
    name for the others."""
    from .hair import SETTABLE, check_settings

    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or name not in SETTABLE:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(SETTABLE)}, "
                                         f"got {text!r:.60}")
    allowed = SETTABLE[name]
    value: object = raw
    if allowed is bool:
        value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(raw.lower(), raw)
    elif not isinstance(allowed[0], str):
        try:
            value = float(raw)
        except ValueError:
            pass
    else:  # names in any case, as yes/no are (READING was refused where YES was taken); grey as gray
        value = raw.lower()
        if name == "hair_colour" and value == "grey":
            value = "gray"
    try:
        check_settings({name: value}, what="{name}")  # argparse says "argument --set:"
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("True or False", "yes or no")) from None
    return name, value


def _set_argument(p) -> None:
    p.add_argument("--set", type=_setting, action="append", default=None, metavar="NAME=VALUE",
                   help="draw this instead of what the attribute model decides (repeat for more; a name "
                        "given twice: the last counts): glasses=none|reading|sunglasses, "
                        "beard|moustache|headwear|bald=yes|no, hair_colour=black|brown|blond|red|gray (or grey), "
                        "hair_length=long|short, age=YEARS, skin_tone=1..10 (Monk scale), "
                        "headwear_kind=cap|beanie|brimmed|scarf|turban")
    p.add_argument("--no-child-head", dest="child_head", action="store_false",
                   help="draw a child's head at adult proportions (default: taller above the brows, by age)")


from .checks import float_arg, names_a_folder, one_line  # noqa: E402 (light: the package has numpy loaded already)

_likeness = float_arg(lambda v: 0.5 <= v <= 2.0, "expected a number from 0.5 to 2, got {text!r:.60}")
#: Longest ``--max-seconds`` (about 115 days; videoio reads no longer length from a file): a larger
#: one made no frame limit (1e308 s times the frame rate is beyond any integer: a traceback).
MAX_SECONDS = 1e7
_seconds = float_arg(lambda v: 0 < v <= MAX_SECONDS,
                     f"expected a positive number of seconds, at most {MAX_SECONDS:,.0f} (115 days), "
                     "got {text!r:.60}")
# (animation.MIN_FPS and MAX_FPS, written here: importing animation would cost every command ~12 ms)
_fps = float_arg(lambda v: 0.001 <= v <= 1000, "expected frames per second in [0.001, 1000], got {text!r:.60}")
_tolerance = float_arg(lambda v: 0 <= v <= 64, "expected a tolerance in pixels, 0..64, got {text!r:.60}")


def _background(text: str) -> str:
    """An argparse type for ``--background``: white, black, transparent (any
    case) or a hex colour ``#rgb``, ``#rgba``, ``#rrggbb``, ``#rrggbbaa``
    (quote it in a shell: ``#`` starts a comment), returned as the renderer
    takes it (a name, ``#rrggbb`` or ``#rrggbbaa``). The renderer's own error
    offers an RGB(A) tuple, which a command line cannot give."""
    from .native import _background as renderers_background

    name = text.strip().lower()
    if name.startswith("#") and len(name) in (4, 5):  # #rgb, #rgba: each digit doubled
        name = "#" + "".join(c + c for c in name[1:])
    try:
        renderers_background(name)  # the renderer's own check of names and #rrggbb[aa]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected white, black, transparent or a hex colour '#rrggbb' (also "
                                         f"'#rgb', '#rrggbbaa', '#rgba'), got {text!r:.60}") from None
    return name


_seed = _int_in(0, 2 ** 64 - 1, "a whole number >= 0", "expected a whole number from 0 to 2**64 - 1, got {text!r:.60}")


_count = _int_in(1, 1000, "a whole number", "expected 1..1000, got {v}")


_frame_count = _int_in(1, None, "a whole number", "expected a positive number of frames, got {v}")


def _animation_arguments(p, fps_help: str, size_help: str | None = None, size_default: int | None = 512) -> None:
    p.add_argument("--fps", type=_fps, default=None, help=fps_help)
    p.add_argument("--size", type=_positive_int, default=size_default, metavar="N",
                   help=size_help or "animation width and height in pixels (default 512; vector, scales to "
                                     "any size)")
    p.add_argument("--tolerance", type=_tolerance, default=None, metavar="PX",
                   help="keyframe/path reduction tolerance in pixels at --size (default size/256, 2 px at 512; "
                        "coordinates are rounded to 1/64 px at the finest, so under 1/128 px, 0 included, "
                        "every vertex and every keyframe but exactly linear runs is kept, within 1/128 px)")
    p.add_argument("--background", type=_background, default=None,
                   help="animation background: transparent (default), white, black or a hex colour #rrggbb "
                        "(#rgb, #rgba, #rrggbbaa)")


#: ``--estimator``'s help (``Options.estimator``).
_ESTIMATOR_HELP = ("what draws the face: hybrid (the model's appearance, the geometry from the landmarks), "
                   "model (the paper's network alone) or artist (the auto-artist: measured from the photo, "
                   "without the face model and the attribute regressor); auto (default): hybrid where the "
                   "shipped model files exist, else artist")


#: Highest --face index (the SDK finds at most api.MAX_FACES faces per frame).
_MAX_FACE = 63


_face_index = _int_in(0, _MAX_FACE, "a whole number", f"expected a face index 0..{_MAX_FACE} (0 = the largest), got {{v}}")


_positive_int = _int_in(1, 16384, "a whole number", "expected 1..16384, got {v}")


#: The signals (SIGINT, SIGTERM, SIGHUP) that asked this run to stop, as they arrived.
_STOP: list[int] = []


def _on_signal(signum, frame) -> None:
    _STOP.append(signum)
    # Raised here it unwinds the run at once, also out of a blocked write to
    # the encoder; but inside an import the exception is printed and dropped by
    # a library's fallback or turned into "ImportError: initialization failed"
    # by an extension module, so there it waits for the next _check_stop
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith("<frozen importlib"):
            return
        f = f.f_back
    raise _Signalled(signum)


def _check_stop() -> None:
    """Raises :class:`_Signalled` when a stop signal arrived earlier and its
    exception was deferred (it came during an import) or lost (a native
    callback swallowed it). Called once the models are loaded and on every
    frame, and after the command whatever it raised."""
    if _STOP:
        raise _Signalled(_STOP[0])


def _output_names(args) -> list[tuple[str, str]]:
    """The options of ``args`` that name an output file (``demo -o`` names
    a folder; ``animate --params`` is an input)."""
    out = []
    if args.command != "demo" and isinstance(getattr(args, "output", None), str):
        out.append(("-o", args.output))
    if isinstance(getattr(args, "screenshot", None), str):
        out.append(("--screenshot", args.screenshot))
    if args.command == "video" and isinstance(getattr(args, "params", None), str):
        out.append(("--params", args.params))
    return out


def _one_line(exc: BaseException) -> str:
    """An error's text on one line (a ModelError lists each bad model file on a line of its own)."""
    text = ""
    for part in filter(None, (line.strip() for line in str(exc).splitlines())):
        text += (" " if not text or text.endswith(":") else "; ") + part if text else part
    return text


def main(argv=None) -> int:
    """Runs one command (:func:`_main`). Started with stderr closed (``2>&-``:
    ``sys.stderr`` is None), its messages go nowhere: ``print(file=None)``
    wrote the errors and argparse's usage on stdout (a review, session 76)."""
    if sys.stderr is not None:
        return _main(argv)
    sys.stderr = open(os.devnull, "w", encoding="utf-8")
    try:
        return _main(argv)
    finally:
        closing, sys.stderr = sys.stderr, None
        closing.close()


def _main(argv=None) -> int:
    """Runs one command. Exit status: 0 done, 1 error (one line on stderr),
    2 usage (and ``live`` without a display), 3 the input video was truncated (output written for the decoded
    part), 130 interrupted (Ctrl-C), 128+N killed by signal N (SIGTERM, SIGHUP).
    Temporary files are removed on every path out."""
    for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 is printed escaped
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # pragma: no cover - a replaced stream
            pass
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except AvatarizerError as exc:  # (a broken install: an option's check needed the schema, which would not
        # load; one line, as every command's, not a traceback)
        print(f"avatarizer: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    if not getattr(args, "func", None):  # (a usage error: its text on stderr, as every other one's)
        ap.print_help(sys.stderr)
        return 2
    if getattr(args, "set", None):  # each --set is checked alone by argparse; two that conflict, here
        from .hair import check_settings

        try:
            check_settings(dict(args.set), what="--set")
        except ValueError as exc:  # (a usage error, exit 2, as a bad single --set is)
            text = str(exc).replace("=True", "=yes").replace("=False", "=no")
            print(f"avatarizer {args.command}: error: {text}", file=sys.stderr)
            return 2
    for name, value in _output_names(args):  # (Path() drops the slash: `-o dir.png/` wrote a file dir.png)
        # (and a last part "." or "..": `-o old.png/.` is a folder to the system, a file old.png to Path())
        if names_a_folder(value):
            print(f"avatarizer {args.command}: error: {name} {value!r:.200} ends with a path separator or a '.' or "
                  "'..' part (a folder): "
                  "give a file name", file=sys.stderr)
            return 2
    handlers = {}
    _STOP.clear()
    if _in_main_thread():
        # Ctrl-C too: Python's own KeyboardInterrupt, raised inside an import, becomes "ImportError:
        # initialization failed" (MediaPipe's extension) or, escaping a dataclass being made there,
        # makes CPython end the process by SIGINT whatever status main returns. An ignored SIGINT
        # (a background job, nohup) stays ignored.
        stops = [signal.SIGTERM, signal.SIGHUP]
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            stops.append(signal.SIGINT)
        for sig in stops:
            try:
                handlers[sig] = signal.signal(sig, _on_signal)
            except (OSError, ValueError):  # pragma: no cover - platform without it
                pass
    status = 1
    from .logfilter import QUIET

    QUIET.start(f"avatarizer {args.command}")  # the libraries' Python warnings to logging (logfilter)
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = _StdoutWrites(stdout)
    try:
        try:
            status = args.func(args)
            if sys.stdout is not None:  # (None: started with stdout closed, `>&-`; print writes nothing then)
                sys.stdout.flush()  # (a pipe's buffer: a reader gone raises here, not at the exit's flush)
        except BaseException:
            _check_stop()  # whatever the signal's exception became, the run stops for the signal
            raise
        _check_stop()  # one deferred in an import and never checked after: the run still stops for it
        return status
    except CLIError as exc:
        # (one line: a file name with a line break in it is shown with it escaped)
        text = one_line(str(exc))
        print(f"avatarizer {args.command}: error: {text}", file=sys.stderr)
        status = getattr(exc, "status", 1)
        return status
    except (ValueError, AvatarizerError) as exc:  # the SDK's plain-sentence errors
        print(f"avatarizer {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout went away (`| head`): quietly, as other tools
        status = _broken_pipe()
        return status
    except OSError as exc:  # the file system said no (permissions, full disk, ...)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"avatarizer {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"avatarizer {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except ImportError as exc:
        if "cannot open shared object file" not in str(exc):
            raise
        # a system library is missing: a traceback from cv2's import (a minimal image without libGL or GLib;
        # a review, session 72); OpenCV's are named with their packages
        opencv = any(lib in str(exc) for lib in ("libGL.so", "libglib", "libgthread", "libgobject"))
        print(f"avatarizer {args.command}: error: a system library is missing ({_one_line(exc)})"
              + (": on Debian/Ubuntu `apt-get install libgl1 libglib2.0-0` (OpenCV's; README, Install)" if opencv
                 else ""), file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. device='cuda' without CUDA
        print(f"avatarizer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\navatarizer {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Signalled as exc:
        if exc.signum == signal.SIGINT:
            print(f"\navatarizer {args.command}: interrupted", file=sys.stderr)
        else:
            print(f"\navatarizer {args.command}: stopped by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        try:
            _cleanup_temps(failed=status not in (0, EXIT_TRUNCATED))
        finally:  # (also when a second signal interrupts the clean-up)
            from .logfilter import FILTER

            QUIET.stop()
            FILTER.stop()
            if isinstance(sys.stdout, _StdoutWrites):  # (the caller's stream back: a test's, a script's)
                sys.stdout = stdout
        for sig, old in handlers.items():
            signal.signal(sig, old)


def _broken_pipe() -> int:
    """The exit status after stdout's reader went away (``avatarizer image ...
    --attributes | head -1``): 128 + SIGPIPE (141, what a tool killed by the
    signal reports; 1 where there is none), with no message (nobody reads it),
    and stdout pointed at the null device so that the interpreter's last
    flush at exit does not fail again (Python's docs, "Note on SIGPIPE").
    What was already written (the output file) stays."""
    _stdout_to_null(sys.stdout)
    return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1


def _stdout_to_null(stream) -> None:
    """``stream``'s file descriptor pointed at the null device: the flushes
    after a failed one (the interpreter's at exit) write nowhere instead of
    failing again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # (no real stdout: nothing to flush)
        pass


def _in_main_thread() -> bool:
    """Signal handlers can only be installed from the main thread."""
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
