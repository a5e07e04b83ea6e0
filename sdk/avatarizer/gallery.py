"""Contact sheets and the gallery of sampled avatars.

    python -m avatarizer.gallery docs/gallery.png --overwrite   # 24 diverse sampled avatars (make gallery)
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from . import schema
from .checks import int_arg
from .render import render


def contact_sheet(tiles: Sequence[np.ndarray], cols: int, labels: Sequence[str] | None = None,
                  pad: int = 4, background=(255, 255, 255)) -> np.ndarray:
    """Grid of equally sized RGB/RGBA uint8 tiles (alpha composited on the background),
    with optional text labels under each tile."""
    from PIL import Image, ImageDraw

    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    h, w = tiles[0].shape[:2]
    label_h = 14 if labels else 0
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad + label_h) + pad), background)
    draw = ImageDraw.Draw(sheet)
    for i, t in enumerate(tiles):
        if t.shape[:2] != (h, w):
            raise ValueError(f"tile {i} is {t.shape[:2]}, expected {(h, w)}")
        im = Image.fromarray(t)
        if im.mode == "RGBA":
            bg = Image.new("RGBA", im.size, tuple(background) + (255,))
            im = Image.alpha_composite(bg, im).convert("RGB")
        x = pad + (i % cols) * (w + pad)
        y = pad + (i // cols) * (h + pad + label_h)
        sheet.paste(im.convert("RGB"), (x, y))
        if labels:
            draw.text((x + 2, y + h + 1), str(labels[i])[: max(4, w // 6)], fill=(60, 60, 60))
    return np.asarray(sheet)


def diverse_samples(n: int = 24, pool: int = 600, seed: int = 0) -> np.ndarray:
    """``n`` sampled avatars chosen from a larger pool by farthest-point
    selection on a few visible traits (hairstyle, skin and hair colour, face
    shape, glasses, beard, headwear, age lines), so a gallery shows visibly
    different people rather than twenty variations of one. The pool is
    at least twice ``n`` (a fixed 600 repeated the first avatar as the
    601st and every one after: all distances were 0). ``n`` < 1 is refused
    (``ValueError``: 0 gave one avatar)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    P = schema.sample(max(int(pool), 2 * int(n)), seed=seed)
    col = lambda name: P[:, schema.index(name)]  # noqa: E731
    style = col("hair_style.bank_id")
    feats = np.stack([
        np.eye(16)[style.astype(int) % 16].T * 0.6,
    ])[0].T
    skin = (col("face.r") + col("face.g") + col("face.b")) / 3
    hair = (col("hair_front.r") + col("hair_front.g") + col("hair_front.b")) / 3
    shape = (col("face.y0") - col("face.y7")) / (col("face.x5") - col("face.x9"))
    extra = np.stack([skin * 2.5, hair * 1.5, (shape - shape.mean()) * 4, (col("glasses.type") > 0) * 0.8,
                      (col("beard.opacity") > 0.5) * 0.8, (col("headwear.type") > 0) * 0.8,
                      col("nasolabial_l.w0") * 80, col("teeth.show") * 0.4], 1)
    X = np.concatenate([feats, extra], 1)
    chosen = [0]
    d = np.linalg.norm(X - X[0], axis=1)
    while len(chosen) < n:
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(X - X[i], axis=1))
    return P[chosen]


#: The largest contact sheet :func:`gallery` makes (width x height pixels; 300 MB as RGB).
MAX_SHEET_PIXELS = 100_000_000


def sheet_size(n: int, size: int, cols: int = 6, pad: int = 4) -> tuple[int, int]:
    """(width, height) of the sheet of ``n`` tiles of ``size`` pixels: at most
    ``cols`` columns, fewer when there are fewer tiles."""
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    return cols * (size + pad) + pad, rows * (size + pad) + pad


def gallery(path: Path, n: int = 24, size: int = 256, cols: int = 6, seed: int = 0) -> Path:
    """Writes a sheet of ``n`` diverse sampled avatars (``ValueError`` when
    it would be larger than ``MAX_SHEET_PIXELS``, and for ``n`` < 1:
    :func:`diverse_samples`)."""
    from PIL import Image

    w, h = sheet_size(n, size, cols)
    if w * h > MAX_SHEET_PIXELS:
        raise ValueError(f"a sheet of {n} avatars of {size} px would be {w}x{h} pixels, more than "
                         f"{MAX_SHEET_PIXELS:,}; ask for fewer or smaller avatars")
    cols = max(1, min(cols, n))
    P = diverse_samples(n, seed=seed)
    tiles = [render(p, size, background="white") for p in P]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(tiles, cols)).save(path, optimize=True)
    return path


#: ``-n``: a whole number in 1..1000, as ``avatarizer render-samples -n``
_count = int_arg(1, 1000, not_int="expected a whole number, got {text!r:.60}", out_of_range="expected 1..1000, got {v}")


#: ``--size`` and ``--seed``: as ``avatarizer render-samples`` takes them (the CLI imports this module)
_tile = int_arg(1, 16384, not_int="expected a whole number, got {text!r:.60}", out_of_range="expected 1..16384, got {v}")
_seed = int_arg(0, 2 ** 64 - 1, not_int="expected a whole number, got {text!r:.60}",
                out_of_range="expected a whole number from 0 to 2**64 - 1, got {v}")


def main(argv=None):
    """``python -m avatarizer.gallery [OUT] [-n N] [--size PX] [--cols C]
    [--seed S] [--overwrite]`` (``make gallery``: docs/gallery.png). An
    existing OUT is kept unless ``--overwrite`` (as ``avatarizer
    render-samples``; it was replaced without a word), and the numbers are
    checked as the CLI's (``--size 0`` was a traceback, ``--cols 0`` taken)."""
    ap = argparse.ArgumentParser(description="Render a gallery of sampled avatars")
    ap.add_argument("out", nargs="?", default="docs/gallery.png")
    ap.add_argument("-n", type=_count, default=24, help="how many avatars (1..1000)")
    ap.add_argument("--size", type=_tile, default=256, help="tile size in pixels (default 256)")
    ap.add_argument("--cols", type=_count, default=6, help="columns (1..1000, default 6)")
    ap.add_argument("--seed", type=_seed, default=0, help="random seed, a whole number >= 0 (default 0)")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):  # (before drawing: as render-samples)
        ap.error(f"unknown output type {out.suffix or '(none)'!r}: use .png, .jpg or .webp")
    w, h = sheet_size(args.n, args.size, args.cols)
    if w * h > MAX_SHEET_PIXELS:
        ap.error(f"a sheet of {args.n} avatars of {args.size} px would be {w}x{h} pixels, more than "
                 f"{MAX_SHEET_PIXELS:,}; ask for fewer or smaller avatars")
    import os
    import tempfile

    from ._files import new_file_mode
    from .animation import link_new, refuse_target

    try:  # (a folder, a pipe or device, a file above it, an existing OUT without --overwrite)
        refuse_target(out, args.overwrite)
    except FileExistsError:
        ap.error(f"{out} already exists; pass --overwrite to replace it")
    except ValueError as exc:
        ap.error(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".gallery-", suffix=out.suffix, dir=out.parent)  # (whole or not at all)
    os.close(fd)
    try:
        gallery(Path(name), args.n, args.size, args.cols, args.seed)
        os.chmod(name, new_file_mode(out))  # (mkstemp makes 0600: the gallery was written private)
        if args.overwrite:
            os.replace(name, out)
        else:  # (never over a file that appeared while it was drawn)
            link_new(name, out)
    finally:
        Path(name).unlink(missing_ok=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
