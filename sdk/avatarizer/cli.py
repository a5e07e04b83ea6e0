"""The ``avatarizer`` command line.

    avatarizer --version
    avatarizer demo [-o DIR]            the README's main job
    avatarizer render-samples -n 24 -o gallery.png
    avatarizer image IN -o OUT.png|OUT.svg|OUT.pdf [--size N] [--overwrite]
    avatarizer video IN.mp4 -o OUT.mp4 [--layout overlay|side-by-side] [--overwrite] [--max-seconds S]
    avatarizer bench [--json] [--frames N]

Heavy modules (MediaPipe, the pipeline) are imported inside the commands, so
``--version`` and ``--help`` answer at once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import AvatarizerError


def _demo(args) -> int:
    from PIL import Image

    from . import schema
    from .gallery import gallery
    from .render import render, to_svg

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    g = gallery(out / "gallery.png", n=24, size=256)
    default = schema.default()
    Image.fromarray(render(default, 512, background="white")).save(out / "default.png")
    (out / "default.svg").write_text(to_svg(default, 512, background="white"))
    print(f"wrote {g} (24 sampled avatars)")
    print(f"wrote {out / 'default.png'} and {out / 'default.svg'} (the canonical default face)")
    return _demo_photo(out)


def _demo_photo(out: Path) -> int:
    """The main job on a real portrait: the bundled NASA astronaut photo (public domain)."""
    import numpy as np
    from PIL import Image

    from .imageio import SAMPLE_PHOTO, sample_photo

    try:
        photo = sample_photo()
    except (OSError, ValueError) as exc:
        print(f"avatarizer demo: error: the bundled sample portrait {SAMPLE_PHOTO} cannot be read ({exc}); "
              "reinstall the package", file=sys.stderr)
        return 1
    _quiet_mediapipe()
    from .api import Avatarizer

    with Avatarizer() as av:
        avatar = av.from_frame(photo)
        how = f"estimator: {av.estimator} ({av.estimator_reason})"
    if avatar is None:
        print("avatarizer demo: no face found in the astronaut photo", file=sys.stderr)
        return 1
    png, svg, side = out / "astronaut_avatar.png", out / "astronaut_avatar.svg", out / "astronaut_side_by_side.png"
    Image.fromarray(avatar.render(512, background="white")).save(png)
    svg.write_text(avatar.to_svg(512, background="white"))
    h = photo.shape[0]
    pic = avatar.render(h, background="white")[..., :3]
    Image.fromarray(np.concatenate([photo, pic], axis=1)).save(side)
    print(f"wrote {png} and {svg} (the avatar of the bundled astronaut photo; {how})")
    print(f"wrote {side} (photo | avatar)")
    return 0


def _quiet_mediapipe() -> None:
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _check_output(inp: Path | None, out: Path, overwrite: bool) -> None:
    if inp is not None and out.exists() and inp.exists() and out.resolve() == inp.resolve():
        raise CLIError(f"the output {out} is the input file; refusing to overwrite it")
    if out.exists() and not overwrite:
        raise CLIError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise CLIError(f"{out} is a directory")
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)


_IMAGE_SUFFIXES = (".png", ".svg", ".pdf")


def _image(args) -> int:
    inp, out = Path(args.input), Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise CLIError(f"unknown output type {out.suffix or '(none)'!r}: use .png, .svg or .pdf")
    if not inp.exists():
        raise CLIError(f"no such file: {inp}")
    _check_output(inp, out, args.overwrite)
    _quiet_mediapipe()
    from .api import Avatarizer
    from .imageio import load_image

    try:
        photo = load_image(inp)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    with Avatarizer(estimator=args.estimator) as av:
        avatar = av.from_frame(photo, face_index=args.face)
    if avatar is None:
        raise CLIError(f"no face found in {inp}" + (f" (asked for face {args.face})" if args.face else ""))
    bg = None if args.background == "transparent" else args.background
    tmp = out.with_name(out.name + ".partial")
    if suffix == ".png":
        from PIL import Image

        Image.fromarray(avatar.render(args.size, background=bg)).save(tmp, format="PNG")
    elif suffix == ".svg":
        tmp.write_text(avatar.to_svg(args.size, background=bg))
    else:
        tmp.write_bytes(avatar.to_pdf(args.size, background=bg))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


def _progress(done: int, total: int | None, t0: float, stream=None) -> None:
    import time

    stream = stream or sys.stderr
    el = time.perf_counter() - t0
    fps = done / el if el > 0 else 0.0
    if total:
        frac = min(done / total, 1.0)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        eta = (total - done) / fps if fps > 0 else 0.0
        msg = f"\r[{bar}] {done}/{total} frames  {fps:5.1f} fps  eta {eta:4.0f} s"
    else:
        msg = f"\r{done} frames  {fps:5.1f} fps"
    stream.write(msg)
    stream.flush()


def _video(args) -> int:
    import shutil
    import subprocess
    import time

    import numpy as np

    inp, out = Path(args.input), Path(args.output)
    if not inp.exists():
        raise CLIError(f"no such file: {inp}")
    if out.suffix.lower() != ".mp4":
        raise CLIError(f"the output must be an .mp4 file, got {out.name!r}")
    _check_output(inp, out, args.overwrite)
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise CLIError(f"--max-seconds must be positive, got {args.max_seconds}")
    _quiet_mediapipe()
    import cv2

    from .api import Avatarizer

    cap = cv2.VideoCapture(str(inp))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise CLIError(f"could not decode {inp} as a video (not a video file, or a codec this OpenCV "
                       "build cannot read)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 30.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    limit = int(round(args.max_seconds * fps)) if args.max_seconds else None
    total = min(count, limit) if count > 0 and limit else (limit or count or None)
    h, w = first.shape[:2]
    side = args.layout == "side-by-side"
    size = (2 * w if side else w, h)
    ffmpeg = shutil.which("ffmpeg")
    partial = out.with_name(out.stem + ".partial.mp4")  # cv2 picks the container by suffix
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        cap.release()
        raise CLIError(f"could not open {out} for writing an mp4 video")
    done = found = 0
    t0 = time.perf_counter()
    try:
        with Avatarizer(mode="video", color_order="bgr", estimator=args.estimator) as av:
            frame = first
            while frame is not None and (limit is None or done < limit):
                avatar = av.from_frame(frame, timestamp_ms=done * 1000.0 / fps)
                if avatar is not None and not avatar.stale:
                    found += 1
                if side:
                    if avatar is not None:
                        pic = avatar.render(width=w, height=h, background="white", roll=True)[..., :3][..., ::-1]
                    else:
                        pic = np.full_like(frame, 255)
                    shown = np.concatenate([frame, np.ascontiguousarray(pic)], axis=1)
                else:
                    shown = avatar.overlay(frame) if avatar is not None else frame
                writer.write(shown)
                done += 1
                if done % 5 == 0 or done == total:
                    _progress(done, total, t0)
                ok, frame = cap.read()
                if not ok:
                    frame = None
    except BaseException:
        writer.release()
        cap.release()
        partial.unlink(missing_ok=True)
        raise
    writer.release()
    cap.release()
    sys.stderr.write("\n")
    if done == 0:
        partial.unlink(missing_ok=True)
        raise CLIError(f"no frames could be decoded from {inp}")
    audio = "dropped (ffmpeg not found on PATH; install ffmpeg to keep the sound)"
    if ffmpeg:
        muxed = out.with_name(out.stem + ".muxed.partial.mp4")
        cmd = [ffmpeg, "-v", "error", "-y", "-i", str(partial), "-i", str(inp), "-map", "0:v:0", "-map", "1:a?",
               "-c:v", "copy", "-c:a", "copy", "-t", f"{done / fps:.3f}", str(muxed)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            muxed.replace(partial)
            audio = "copied from the input (when it has any)"
        else:
            muxed.unlink(missing_ok=True)
            why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit status {res.returncode}"
            audio = f"dropped (ffmpeg could not copy it: {why})"
    partial.replace(out)
    secs = time.perf_counter() - t0
    print(f"wrote {out}: {done} frames ({done / fps:.1f} s of video, {args.layout}), a face in {found}, "
          f"{done / secs:.1f} fps; audio {audio}")
    return 0


def _bench(args) -> int:
    _quiet_mediapipe()
    from .bench import command

    return command(args)


def _render_samples(args) -> int:
    from .gallery import gallery

    print(f"wrote {gallery(Path(args.output), n=args.n, size=args.size, seed=args.seed)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="avatarizer", description="Parametric vector avatars from portraits.")
    ap.add_argument("--version", action="version", version=f"avatarizer {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="render the demo outputs and say where they are")
    d.add_argument("-o", "--output", default="out/demo", help="output folder (default out/demo)")
    d.set_defaults(func=_demo)
    s = sub.add_parser("render-samples", help="a contact sheet of sampled avatars")
    s.add_argument("-o", "--output", default="gallery.png")
    s.add_argument("-n", type=int, default=24)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_render_samples)

    im = sub.add_parser("image", help="a photo → avatar as PNG, SVG or PDF",
                        description="Finds the largest face in a photo and writes its avatar.")
    im.add_argument("input", metavar="IN", help="a photo (any format Pillow reads)")
    im.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.png, OUT.svg or OUT.pdf")
    im.add_argument("--size", type=_positive_int, default=512, help="pixels (PNG) or points (SVG/PDF); default 512")
    im.add_argument("--background", default="white", help="white (default), transparent, black or #rrggbb")
    im.add_argument("--face", type=int, default=0, help="which face, 0 = the largest (default)")
    im.add_argument("--estimator", choices=("auto", "model", "artist"), default="auto")
    im.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    im.set_defaults(func=_image)

    v = sub.add_parser("video", help="a video → the same video with a live avatar",
                       description="Tracks the largest face through a video and draws its avatar over "
                                   "the face (overlay) or beside the frame (side-by-side). The input's "
                                   "sound is copied when ffmpeg is on PATH, else dropped (with a note).")
    v.add_argument("input", metavar="IN", help="a video file OpenCV can decode")
    v.add_argument("-o", "--output", required=True, metavar="OUT.mp4")
    v.add_argument("--layout", choices=("overlay", "side-by-side"), default="overlay")
    v.add_argument("--max-seconds", type=float, default=None, metavar="S", help="stop after S seconds of video")
    v.add_argument("--estimator", choices=("auto", "model", "artist"), default="auto")
    v.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the input)")
    v.set_defaults(func=_video)

    b = sub.add_parser("bench", help="per-stage and end-to-end latency",
                       description="Times every pipeline stage and the whole frame-to-avatar path on real "
                                   "frames (512x512 input, 256 px render), with MediaPipe landmarks alone "
                                   "as the baseline, in the same run.")
    from .bench import add_arguments

    add_arguments(b)
    b.set_defaults(func=_bench)
    return ap


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= v <= 16384:
        raise argparse.ArgumentTypeError(f"expected 1..16384, got {v}")
    return v


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"avatarizer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, AvatarizerError) as exc:  # the SDK's plain-sentence errors
        print(f"avatarizer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\navatarizer {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
