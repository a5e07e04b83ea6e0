"""Generates the avatar parameter schema: ``sdk/avatarizer/data/schema.json``
(shipped with the runtime package) and ``native/avz_schema.h`` (offsets and
ranges for the C renderer). Both come from the feature table below, so the
Python side and the C side cannot disagree; ``tests/test_schema.py`` checks
that the committed files are what this script writes.

Run: ``python -m avatarizer_export.schemagen`` (or ``avatarizer-export schema``).

Coordinates are in the canonical face frame of the aligned crop: x and y run
from -1 to 1 across the crop, x to the right, y down; the eye on the image's
left sits at (-0.25, -0.10), the other at (0.25, -0.10), the mouth centre at
(0, 0.40). Paired features are named by image side: ``_l`` is the feature on
the image's left (the person's right).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = "1.1.0"
#: earlier versions whose vectors mean the same in this one (``schema.json``'s
#: ``reads``): 1.1.0 only added ``headwear.type`` 4, a head scarf, and 5, a
#: turban, so an avatar saved and a model exported with 1.0.0 are read as they are
READS = ("1.0.0",)
PARAM_COUNT = 629

ROOT = Path(__file__).resolve().parents[2]
JSON_PATH = ROOT / "sdk" / "avatarizer" / "data" / "schema.json"
HEADER_PATH = ROOT / "native" / "avz_schema.h"
DOC_PATH = ROOT / "docs" / "schema.md"


@dataclass
class Feature:
    """One feature block. ``layout`` is the order of its parameters.

    kinds of layout:
      "stroke":  points (x, y)^N, w0, w1, r, g, b        (paper's nose encoding)
      "shape":   points (x, y)^N, opacity, r, g, b       (filled polygon/curve)
      "iris":    cx, cy, radius, pupil, r, g, b
      "ellipse": cx, cy, rx, ry, opacity, r, g, b
      "scalars": named scalars given in ``scalars``
    mirror:
      "pair:<other>"    swap with the other side's block (x negated)
      "reverse"         symmetric open curve: reverse point order (and swap
                        w0/w1 for a linear taper)
      "reverse_closed"  symmetric closed curve with point 0 on the axis
      "negate"          x negated only (asymmetric artistic element)
    """

    name: str
    group: str
    layout: str
    points: list = field(default_factory=list)
    margin: tuple = (0.1, 0.1)
    widths: tuple = (0.0, 0.0)
    wmax: float = 0.05
    rgb: tuple = (0.0, 0.0, 0.0)
    opacity: float = 1.0
    mirror: str = "reverse"
    profile: str = "taper"  # taper | bulge | brow | fill
    closed: bool = False
    scalars: list = field(default_factory=list)  # (name, kind, lo, hi, default)
    xbox: tuple | None = None  # absolute clamp for point ranges
    ybox: tuple | None = None


def mirror_pts(pts):
    return [(-x, y) for x, y in pts]


# ---------------------------------------------------------------- the table
SKIN = (0.93, 0.76, 0.64)
SKIN_SHADE = (0.80, 0.58, 0.47)
HAIR = (0.30, 0.20, 0.13)

EYE_UP_R = [(0.13, -0.095), (0.18, -0.138), (0.25, -0.152), (0.32, -0.140), (0.375, -0.103)]
EYE_LO_R = [(0.13, -0.095), (0.18, -0.072), (0.25, -0.064), (0.32, -0.072), (0.375, -0.103)]
CREASE_R = [(0.15, -0.150), (0.25, -0.183), (0.36, -0.150)]
BROW_R = [(0.11, -0.225), (0.18, -0.262), (0.26, -0.275), (0.33, -0.266), (0.41, -0.235)]
EAR_R = [(0.47, -0.14), (0.565, -0.17), (0.60, 0.0), (0.565, 0.17), (0.47, 0.25)]
NOSTRIL_R = [(0.028, 0.232), (0.060, 0.222)]
CHEEK_SH_R = [(0.46, 0.02), (0.40, 0.20), (0.33, 0.40), (0.42, 0.38)]
CHEEK_HL_R = [(0.20, 0.06), (0.33, 0.02), (0.30, 0.10)]
NASOLAB_R = [(0.10, 0.22), (0.16, 0.30), (0.19, 0.40)]
UNDEREYE_R = [(0.16, -0.04), (0.25, -0.02), (0.34, -0.04)]

FACE_OUTLINE = [
    (0.0, 0.80), (0.18, 0.77), (0.34, 0.64), (0.44, 0.44), (0.49, 0.15),
    (0.50, -0.22), (0.37, -0.66), (0.0, -0.86),
]
FACE_OUTLINE = FACE_OUTLINE + mirror_pts(FACE_OUTLINE[1:7][::-1])  # 14 points


def closed_sym(half):
    """Closed symmetric contour from point 0 (on the axis) through the image
    right side to point N/2 (on the axis)."""
    return half + mirror_pts(half[1:-1][::-1])


HAIR_BACK = closed_sym([
    (0.0, 0.20), (0.50, 0.35), (0.60, 0.00), (0.60, -0.45), (0.45, -0.80),
    (0.20, -0.98), (0.0, -1.00),
])  # 12 points
HAIR_FRONT = closed_sym([
    (0.0, -0.58), (0.30, -0.55), (0.50, -0.30), (0.52, -0.62), (0.36, -0.88),
    (0.0, -0.98),
])  # 10 points


def eye_block(side):
    sgn = 1 if side == "r" else -1
    m = (lambda p: p) if side == "r" else mirror_pts
    other = "l" if side == "r" else "r"
    return [
        Feature(f"eye_{side}_upper", f"eye_{side}", "stroke", m(EYE_UP_R), (0.07, 0.07),
                (0.006, 0.016), 0.05, (0.12, 0.08, 0.07), mirror=f"pair:eye_{other}_upper"),
        Feature(f"eye_{side}_lower", f"eye_{side}", "stroke", m(EYE_LO_R), (0.07, 0.07),
                (0.002, 0.004), 0.03, (0.45, 0.30, 0.26), mirror=f"pair:eye_{other}_lower"),
        Feature(f"eye_{side}_crease", f"eye_{side}", "stroke", m(CREASE_R), (0.07, 0.07),
                (0.001, 0.003), 0.02, (0.62, 0.44, 0.36), mirror=f"pair:eye_{other}_crease"),
        Feature(f"iris_{side}", f"iris_{side}", "iris",
                scalars=[("cx", "x", sgn * 0.25 - 0.08, sgn * 0.25 + 0.08, sgn * 0.25),
                         ("cy", "y", -0.19, -0.03, -0.105),
                         ("radius", "size", 0.015, 0.08, 0.043),
                         ("pupil", "ratio", 0.15, 0.75, 0.42)],
                rgb=(0.36, 0.23, 0.13), mirror=f"pair:iris_{other}"),
        Feature(f"lashes_{side}", f"eye_{side}", "scalars",
                scalars=[("length", "size", 0.0, 0.05, 0.012)], mirror=f"pair:lashes_{other}"),
    ]


def brow(side):
    m = (lambda p: p) if side == "r" else mirror_pts
    other = "l" if side == "r" else "r"
    return Feature(f"brow_{side}", f"brow_{side}", "stroke", m(BROW_R), (0.08, 0.10),
                   (0.034, 0.014), 0.09, (0.24, 0.16, 0.11), mirror=f"pair:brow_{other}",
                   profile="brow",
                   scalars=[("mid_width", "width", 0.0, 0.09, 0.030),
                            ("hairiness", "ratio", 0.0, 1.0, 0.5)])


def pair(name, group, layout, pts_r, margin, **kw):
    out = []
    for side in ("l", "r"):
        pts = pts_r if side == "r" else mirror_pts(pts_r)
        other = "l" if side == "r" else "r"
        out.append(Feature(f"{name}_{side}", group.replace("%s", side), layout, pts, margin,
                           mirror=f"pair:{name}_{other}", **kw))
    return out


def features():
    f = []
    # ---- face slice (predicted by the model)
    f.append(Feature("face", "face_outline", "stroke", FACE_OUTLINE, (0.16, 0.16),
                     (0.006, 0.010), 0.03, SKIN, mirror="reverse_closed", closed=True,
                     profile="fill", xbox=(-0.85, 0.85), ybox=(-1.1, 1.1)))
    f += pair("ear", "ears", "stroke", EAR_R, (0.10, 0.10), widths=(0.005, 0.005), wmax=0.03,
              rgb=SKIN, profile="fill")
    f.append(Feature("neck", "neck", "shape",
                     [(0.25, 0.52), (0.29, 1.30), (-0.29, 1.30), (-0.25, 0.52)], (0.15, 0.15),
                     rgb=SKIN_SHADE, mirror="reverse", profile="fill"))
    f += eye_block("l") + eye_block("r")
    f.append(Feature("sclera", "eyes", "scalars", mirror="reverse",
                     scalars=[("r", "color", 0, 1, 0.97), ("g", "color", 0, 1, 0.96),
                              ("b", "color", 0, 1, 0.94)]))
    f += [brow("l"), brow("r")]
    f.append(Feature("nose_bridge", "nose", "stroke", [(0.050, -0.03), (0.060, 0.09), (0.078, 0.17)],
                     (0.07, 0.08), (0.001, 0.007), 0.03, SKIN_SHADE, mirror="negate"))
    f.append(Feature("nose_base", "nose", "stroke",
                     [(-0.095, 0.200), (-0.055, 0.243), (0.0, 0.255), (0.055, 0.243), (0.095, 0.200)],
                     (0.08, 0.08), (0.003, 0.003), 0.03, (0.55, 0.36, 0.30), profile="bulge"))
    f += pair("nostril", "nose", "stroke", NOSTRIL_R, (0.05, 0.05), widths=(0.010, 0.006),
              wmax=0.04, rgb=(0.42, 0.25, 0.22))
    # mouth
    f.append(Feature("lip_upper_outer", "mouth", "stroke",
                     [(-0.16, 0.400), (-0.10, 0.376), (-0.04, 0.362), (0.0, 0.373), (0.04, 0.362),
                      (0.10, 0.376), (0.16, 0.400)], (0.10, 0.10), (0.002, 0.002), 0.02,
                     (0.78, 0.45, 0.44), profile="bulge"))
    f.append(Feature("lip_lower_outer", "mouth", "stroke",
                     [(-0.16, 0.400), (-0.09, 0.440), (0.0, 0.455), (0.09, 0.440), (0.16, 0.400)],
                     (0.10, 0.12), (0.002, 0.002), 0.02, (0.82, 0.50, 0.48), profile="bulge"))
    inner = [(-0.15, 0.400), (-0.07, 0.397), (0.0, 0.400), (0.07, 0.397), (0.15, 0.400)]
    f.append(Feature("lip_inner_upper", "mouth", "stroke", inner, (0.10, 0.10), (0.004, 0.004),
                     0.02, (0.45, 0.22, 0.22), profile="bulge"))
    f.append(Feature("lip_inner_lower", "mouth", "stroke", inner, (0.10, 0.14), (0.0, 0.0), 0.02,
                     (0.45, 0.22, 0.22), profile="bulge"))
    f.append(Feature("teeth", "mouth", "scalars", mirror="reverse",
                     scalars=[("show", "flag", 0, 1, 0), ("r", "color", 0, 1, 0.96),
                              ("g", "color", 0, 1, 0.95), ("b", "color", 0, 1, 0.90)]))
    # cheeks, shadows, highlights, wrinkles
    for side, cx in (("l", -0.29), ("r", 0.29)):
        f.append(Feature(f"blush_{side}", "cheeks", "ellipse", mirror=f"pair:blush_{'r' if side == 'l' else 'l'}",
                         rgb=(0.92, 0.52, 0.50), opacity=0.12,
                         scalars=[("cx", "x", cx - 0.12, cx + 0.12, cx), ("cy", "y", 0.05, 0.35, 0.18),
                                  ("rx", "size", 0.02, 0.2, 0.09), ("ry", "size", 0.02, 0.2, 0.06)]))
    f += pair("cheek_shadow", "shadows", "shape", CHEEK_SH_R, (0.12, 0.12), rgb=SKIN_SHADE, opacity=0.18)
    f.append(Feature("nose_shadow", "shadows", "shape",
                     [(0.04, 0.00), (0.085, 0.10), (0.10, 0.19), (0.05, 0.16)], (0.08, 0.08),
                     rgb=SKIN_SHADE, opacity=0.35, mirror="negate"))
    f.append(Feature("neck_shadow", "shadows", "shape",
                     [(0.0, 0.82), (0.26, 0.55), (0.0, 0.95), (-0.26, 0.55)], (0.15, 0.15),
                     rgb=(0.62, 0.42, 0.35), opacity=0.45, mirror="reverse_closed", closed=True))
    f.append(Feature("nose_highlight", "highlights", "shape",
                     [(-0.01, 0.12), (0.02, 0.20), (-0.02, 0.21)], (0.06, 0.06),
                     rgb=(1.0, 0.97, 0.93), opacity=0.35, mirror="negate"))
    f.append(Feature("forehead_highlight", "highlights", "shape",
                     [(-0.16, -0.45), (0.10, -0.50), (0.20, -0.40), (-0.05, -0.37)], (0.12, 0.12),
                     rgb=(1.0, 0.97, 0.93), opacity=0.12, mirror="negate"))
    f += pair("cheek_highlight", "highlights", "shape", CHEEK_HL_R, (0.10, 0.10),
              rgb=(1.0, 0.96, 0.92), opacity=0.10)
    f += pair("nasolabial", "wrinkles", "stroke", NASOLAB_R, (0.10, 0.10), widths=(0.0, 0.0),
              wmax=0.02, rgb=SKIN_SHADE)
    f.append(Feature("forehead_line", "wrinkles", "stroke",
                     [(-0.22, -0.42), (0.0, -0.44), (0.22, -0.42)], (0.12, 0.12), (0.0, 0.0), 0.02,
                     SKIN_SHADE, profile="bulge"))
    f += pair("undereye", "wrinkles", "stroke", UNDEREYE_R, (0.08, 0.08), widths=(0.0, 0.0),
              wmax=0.02, rgb=SKIN_SHADE, profile="bulge")
    # ---- hair and accessory slice (filled by retrieval)
    f.append(Feature("hair_back", "hair", "stroke", HAIR_BACK, (0.75, 0.8), (0.0, 0.0), 0.03, HAIR,
                     mirror="reverse_closed", closed=True, profile="fill",
                     xbox=(-1.6, 1.6), ybox=(-1.6, 1.8)))
    f.append(Feature("hair_front", "hair", "stroke", HAIR_FRONT, (0.45, 0.45), (0.0, 0.0), 0.03,
                     (0.42, 0.29, 0.19), mirror="reverse_closed", closed=True, profile="fill",
                     xbox=(-1.3, 1.3), ybox=(-1.4, 0.6)))
    f.append(Feature("hair_style", "hair", "scalars", mirror="reverse",
                     scalars=[("layers", "categorical", 0, 2, 2), ("curl", "ratio", 0, 1, 0.0),
                              ("part_x", "x", -0.5, 0.5, 0.0), ("bank_id", "categorical", 0, 1023, 0)]))
    for i, pts in enumerate([[(-0.30, -0.80), (-0.12, -0.70), (0.05, -0.62)],
                             [(0.32, -0.78), (0.40, -0.60), (0.44, -0.40)]]):
        f.append(Feature(f"hair_strand{i}", "hair", "stroke", pts, (0.5, 0.5), (0.0, 0.0), 0.06,
                         (0.22, 0.14, 0.09), mirror="negate",
                         xbox=(-1.4, 1.4), ybox=(-1.4, 1.6)))
    f.append(Feature("beard", "facial_hair", "shape",
                     closed_sym([(0.0, 0.88), (0.40, 0.62), (0.45, 0.28), (0.0, 0.50)]),
                     (0.25, 0.25), rgb=HAIR, opacity=0.0, mirror="reverse_closed", closed=True))
    f.append(Feature("moustache", "facial_hair", "stroke",
                     [(-0.18, 0.39), (-0.10, 0.325), (0.0, 0.318), (0.10, 0.325), (0.18, 0.39)],
                     (0.10, 0.10), (0.0, 0.0), 0.08, HAIR, profile="bulge"))
    f.append(Feature("glasses", "glasses", "scalars", mirror="reverse",
                     scalars=[("type", "categorical", 0, 2, 0), ("lens_w", "size", 0.06, 0.20, 0.13),
                              ("lens_h", "size", 0.04, 0.16, 0.09), ("roundness", "ratio", 0, 1, 0.5),
                              ("frame_width", "width", 0.002, 0.03, 0.010),
                              ("frame_r", "color", 0, 1, 0.12), ("frame_g", "color", 0, 1, 0.10),
                              ("frame_b", "color", 0, 1, 0.10), ("lens_r", "color", 0, 1, 0.75),
                              ("lens_g", "color", 0, 1, 0.85), ("lens_b", "color", 0, 1, 0.95),
                              ("lens_opacity", "opacity", 0, 1, 0.15)]))
    f.append(Feature("headwear", "headwear", "scalars", mirror="reverse",
                     scalars=[("type", "categorical", 0, 5, 0), ("r", "color", 0, 1, 0.20),
                              ("g", "color", 0, 1, 0.30), ("b", "color", 0, 1, 0.55),
                              ("band_y", "y", -0.9, -0.2, -0.55), ("crown", "size", 0.0, 0.6, 0.25),
                              ("width", "ratio", 0.8, 1.4, 1.05), ("brim", "size", 0.0, 0.5, 0.25)]))
    f.append(Feature("clothes", "clothes", "stroke",
                     [(-1.10, 1.15), (-0.55, 0.93), (0.0, 1.02), (0.55, 0.93), (1.10, 1.15)],
                     (0.35, 0.35), (0.004, 0.004), 0.03, (0.25, 0.35, 0.55), profile="fill",
                     xbox=(-1.6, 1.6), ybox=(0.5, 1.6)))
    return f


FACE_GROUPS = {"face_outline", "ears", "neck", "eye_l", "eye_r", "iris_l", "iris_r", "eyes",
               "brow_l", "brow_r", "nose", "mouth", "cheeks", "shadows", "highlights", "wrinkles"}
HAIR_GROUPS = {"hair"}
ACCESSORY_GROUPS = {"facial_hair", "glasses", "headwear", "clothes"}

WIDTH_NAMES = ("w0", "w1")


def expand(feat: Feature):
    """Parameters of one feature: list of dicts (name, kind, lo, hi, default)."""
    out = []

    def add(suffix, kind, lo, hi, default):
        lo, hi, default = float(lo), float(hi), float(default)
        assert lo < hi and lo <= default <= hi, (feat.name, suffix, lo, hi, default)
        out.append(dict(name=f"{feat.name}.{suffix}", feature=feat.name, group=feat.group,
                        kind=kind, lo=round(lo, 5), hi=round(hi, 5), default=round(default, 5)))

    if feat.layout in ("stroke", "shape"):
        mx, my = feat.margin
        for i, (x, y) in enumerate(feat.points):
            xlo, xhi = x - mx, x + mx
            if feat.mirror == "negate":  # mirrored value must stay in range
                xlo, xhi = -(abs(x) + mx), abs(x) + mx
            ylo, yhi = y - my, y + my
            if feat.xbox:
                xlo, xhi = max(xlo, feat.xbox[0]), min(xhi, feat.xbox[1])
            if feat.ybox:
                ylo, yhi = max(ylo, feat.ybox[0]), min(yhi, feat.ybox[1])
            add(f"x{i}", "x", xlo, xhi, x)
            add(f"y{i}", "y", ylo, yhi, y)
        if feat.layout == "stroke":
            add("w0", "width", 0, feat.wmax, feat.widths[0])
            add("w1", "width", 0, feat.wmax, feat.widths[1])
        else:
            add("opacity", "opacity", 0, 1, feat.opacity)
        for c, v in zip("rgb", feat.rgb):
            add(c, "color", 0, 1, v)
        for (name, kind, lo, hi, d) in feat.scalars:
            add(name, kind, lo, hi, d)
    elif feat.layout == "iris":
        for (name, kind, lo, hi, d) in feat.scalars:
            add(name, kind, lo, hi, d)
        for c, v in zip("rgb", feat.rgb):
            add(c, "color", 0, 1, v)
    elif feat.layout == "ellipse":
        for (name, kind, lo, hi, d) in feat.scalars:
            add(name, kind, lo, hi, d)
        add("opacity", "opacity", 0, 1, feat.opacity)
        for c, v in zip("rgb", feat.rgb):
            add(c, "color", 0, 1, v)
    elif feat.layout == "scalars":
        for (name, kind, lo, hi, d) in feat.scalars:
            add(name, kind, lo, hi, d)
    else:
        raise ValueError(feat.layout)
    return out


def slice_of(feat: Feature) -> str:
    if feat.group in FACE_GROUPS:
        return "face"
    if feat.group in HAIR_GROUPS:
        return "hair"
    if feat.group in ACCESSORY_GROUPS:
        return "accessories"
    raise ValueError(feat.group)


def build():
    feats = features()
    params, fmeta = [], []
    for ft in feats:
        ps = expand(ft)
        fmeta.append(dict(name=ft.name, group=ft.group, layout=ft.layout, offset=len(params),
                          count=len(ps), npoints=len(ft.points), closed=ft.closed,
                          profile=ft.profile if ft.layout == "stroke" else "fill",
                          mirror=ft.mirror, slice=slice_of(ft)))
        params += ps
    assert len(params) == PARAM_COUNT, len(params)
    # slices must be contiguous: face, then hair, then accessories
    order = [m["slice"] for m in fmeta]
    assert order == sorted(order, key=["face", "hair", "accessories"].index), order
    slices = {}
    for m in fmeta:
        s = slices.setdefault(m["slice"], [m["offset"], m["offset"] + m["count"]])
        s[1] = m["offset"] + m["count"]
    mirror = mirror_permutation(fmeta, params)
    doc = dict(
        version=SCHEMA_VERSION,
        reads=list(READS),
        count=len(params),
        frame=dict(description="canonical face frame of the aligned crop: x,y in [-1,1], x right, y down",
                   eye_left=[-0.25, -0.10], eye_right=[0.25, -0.10], mouth=[0.0, 0.40],
                   side_naming="_l is the feature on the image's left (the person's right)"),
        slices=slices,
        features=fmeta,
        params=params,
        mirror=dict(permutation=mirror, negate=[i for i, p in enumerate(params) if p["kind"] == "x"]),
    )
    return doc


def mirror_permutation(fmeta, params):
    """perm[i] = j means mirrored[i] = original[j] (before negating x)."""
    by_name = {m["name"]: m for m in fmeta}
    perm = list(range(len(params)))
    for m in fmeta:
        off, n, npts = m["offset"], m["count"], m["npoints"]
        rule = m["mirror"]
        if rule.startswith("pair:"):
            other = by_name[rule[5:]]
            assert other["count"] == n
            for k in range(n):
                perm[off + k] = other["offset"] + k
        elif rule in ("reverse", "reverse_closed") and npts:
            for i in range(npts):
                j = (npts - 1 - i) if rule == "reverse" else (npts - i) % npts
                perm[off + 2 * i] = off + 2 * j
                perm[off + 2 * i + 1] = off + 2 * j + 1
            if rule == "reverse" and m["layout"] == "stroke" and m["profile"] == "taper":
                perm[off + 2 * npts] = off + 2 * npts + 1
                perm[off + 2 * npts + 1] = off + 2 * npts
    assert sorted(perm) == list(range(len(params)))
    return perm


def c_ident(name):
    return name.upper().replace(".", "_")


def header(doc) -> str:
    lines = [
        "/* Generated by export/avatarizer_export/schemagen.py -- do not edit. */",
        "#ifndef AVZ_SCHEMA_H",
        "#define AVZ_SCHEMA_H",
        "",
        f'#define AVZ_SCHEMA_VERSION "{doc["version"]}"',
        f"#define AVZ_PARAM_COUNT {doc['count']}",
        "",
    ]
    for s, (a, b) in doc["slices"].items():
        lines.append(f"#define AVZ_SLICE_{s.upper()}_BEGIN {a}")
        lines.append(f"#define AVZ_SLICE_{s.upper()}_END {b}")
    lines.append("")
    for m in doc["features"]:
        n = c_ident(m["name"])
        lines.append(f"#define AVZ_F_{n} {m['offset']}")
        if m["npoints"]:
            lines.append(f"#define AVZ_F_{n}_NPTS {m['npoints']}")
    lines.append("")
    for i, p in enumerate(doc["params"]):
        if p["kind"] not in ("x", "y", "width", "color", "opacity") or p["feature"] in (
                "iris_l", "iris_r", "blush_l", "blush_r", "sclera", "teeth", "glasses",
                "headwear", "hair_style", "lashes_l", "lashes_r") or p["name"].endswith(
                ("mid_width", "hairiness")):
            lines.append(f"#define AVZ_P_{c_ident(p['name'])} {i}")
    lines.append("")
    lines.append("static const float avz__param_lo[AVZ_PARAM_COUNT] = {")
    lines += wrap([f"{p['lo']}f" for p in doc["params"]])
    lines.append("};")
    lines.append("static const float avz__param_hi[AVZ_PARAM_COUNT] = {")
    lines += wrap([f"{p['hi']}f" for p in doc["params"]])
    lines.append("};")
    lines.append("static const float avz__param_default[AVZ_PARAM_COUNT] = {")
    lines += wrap([f"{p['default']}f" for p in doc["params"]])
    lines.append("};")
    lines.append("static const char *const avz__param_name[AVZ_PARAM_COUNT] = {")
    lines += wrap([f'"{p["name"]}"' for p in doc["params"]], 4)
    lines.append("};")
    lines += ["", "#endif /* AVZ_SCHEMA_H */", ""]
    return "\n".join(lines)


def wrap(items, per=8):
    return ["    " + ", ".join(items[i:i + per]) + "," for i in range(0, len(items), per)]


def markdown(doc) -> str:
    """docs/schema.md: the groups, their counts and the features."""
    groups: dict[str, list] = {}
    for p in doc["params"]:
        groups.setdefault(p["group"], []).append(p)
    slice_of_group = {m["group"]: m["slice"] for m in doc["features"]}
    lines = [
        "# The avatar parameter vector",
        "",
        f"Schema version {doc['version']}: exactly {doc['count']} parameters, generated by "
        "`python -m avatarizer_export.schemagen` (do not edit by hand; it also writes "
        "`sdk/avatarizer/data/schema.json` and `native/avz_schema.h`).",
        "",
        "Coordinates are in the canonical face frame of the aligned crop: x and y run from -1 to 1 "
        "across the crop, x right, y down; the eye on the image's left is at (-0.25, -0.10), the "
        "other at (0.25, -0.10), the mouth centre at (0, 0.40). `_l` features are on the image's "
        "left (the person's right). Each drawn feature is encoded like the paper's nose: points "
        "(x, y)^N, then start and end widths and R, G, B (strokes), or opacity and R, G, B "
        "(filled shapes).",
        "",
        "| slice | parameters | filled by |",
        "| --- | --- | --- |",
    ]
    who = {"face": "the model (E_s -> F -> D_t)", "hair": "hairstyle retrieval (KNN in the bank)",
           "accessories": "attribute overlays (glasses, facial hair, headwear) and clothes"}
    for name, (a, b) in doc["slices"].items():
        lines.append(f"| `{name}` | {a}..{b - 1} ({b - a}) | {who[name]} |")
    lines += ["", "| group | parameters | slice | features |", "| --- | --- | --- | --- |"]
    for g, ps in groups.items():
        feats = sorted({p["feature"] for p in ps}, key=[p["feature"] for p in ps].index)
        lines.append(f"| `{g}` | {len(ps)} | {slice_of_group[g]} | {', '.join(feats)} |")
    lines += ["", f"Total: {doc['count']}.", "", "## Features", "",
              "| feature | offset | count | points | layout | mirror |", "| --- | --- | --- | --- | --- | --- |"]
    for m in doc["features"]:
        lines.append(f"| `{m['name']}` | {m['offset']} | {m['count']} | {m['npoints']} | "
                     f"{m['layout']}{' (closed)' if m['closed'] else ''} | {m['mirror']} |")
    return "\n".join(lines) + "\n"


def render_json(doc) -> str:
    return json.dumps(doc, indent=1) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed files differ")
    args = ap.parse_args(argv)
    doc = build()
    outputs = {JSON_PATH: render_json(doc), HEADER_PATH: header(doc), DOC_PATH: markdown(doc)}
    stale = [p for p, text in outputs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"stale: {p} (run python -m avatarizer_export.schemagen)")
        return 1 if stale else 0
    from .onnx_util import staged

    for p, text in outputs.items():
        if p not in stale:  # (every file was rewritten in place, a cut write truncating the shipped schema.json)
            print(f"unchanged {p}")
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        with staged(p, "part") as tmp:
            tmp.write_text(text)
            if p.exists():  # (the file's own permissions, as the write in place kept them)
                os.chmod(tmp, stat.S_IMODE(p.stat().st_mode))
        print(f"wrote {p} ({hashlib.sha256(text.encode()).hexdigest()[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
