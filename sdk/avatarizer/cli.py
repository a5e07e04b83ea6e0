"""The ``avatarizer`` command line.

    avatarizer --version
    avatarizer demo [-o DIR]            the README's main job
    avatarizer render-samples -n 24 -o gallery.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


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
    return 0


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
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
