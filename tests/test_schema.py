"""The parameter schema: 629 named parameters, ranges, slices, mirror, normalisation, sampler."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatarizer import render, schema
from avatarizer.schema import SchemaError


def test_exactly_629_named_parameters():
    assert schema.PARAM_COUNT == 629
    assert len(schema.NAMES) == 629 and len(set(schema.NAMES)) == 629
    assert schema.LO.shape == schema.HI.shape == schema.DEFAULT.shape == (629,)
    assert np.all(schema.LO < schema.HI)
    assert np.all((schema.DEFAULT >= schema.LO) & (schema.DEFAULT <= schema.HI))


def test_generated_files_are_current():
    """schema.json and native/avz_schema.h are exactly what the generator writes."""
    from avatarizer_export import schemagen

    doc = schemagen.build()
    assert schemagen.JSON_PATH.read_text() == schemagen.render_json(doc)
    assert schemagen.HEADER_PATH.read_text() == schemagen.header(doc)
    assert schemagen.DOC_PATH.read_text() == schemagen.markdown(doc)


def test_every_parameter_has_name_group_kind_range_default():
    kinds = {"x", "y", "width", "color", "opacity", "size", "ratio", "categorical", "flag"}
    for p in schema.table():
        assert set(p) >= {"name", "feature", "group", "kind", "lo", "hi", "default"}
        assert p["kind"] in kinds, p
        if p["kind"] in ("color", "opacity", "flag"):
            assert 0 <= p["lo"] and p["hi"] <= 1, p


def test_slices_are_contiguous_and_cover_the_vector():
    s = schema.SLICES
    assert s["face"].start == 0 and s["face"].stop == s["hair"].start
    assert s["hair"].stop == s["accessories"].start and s["accessories"].stop == 629
    face_groups = {schema.GROUPS[i] for i in range(s["face"].start, s["face"].stop)}
    assert {"eye_l", "brow_r", "nose", "mouth", "face_outline"} <= face_groups
    assert not face_groups & {"hair", "glasses", "headwear", "facial_hair"}
    assert {schema.GROUPS[i] for i in range(s["hair"].start, s["hair"].stop)} == {"hair"}


def test_required_groups_exist():
    groups = set(schema.GROUPS)
    for g in ("face_outline", "ears", "eye_l", "eye_r", "iris_l", "iris_r", "brow_l", "brow_r",
              "nose", "mouth", "cheeks", "shadows", "highlights", "wrinkles", "neck", "hair",
              "facial_hair", "glasses", "headwear"):
        assert g in groups, g
    # features the issue names: lids, iris, pupil, sclera, lashes, teeth, nostrils
    for name in ("eye_l_upper.x0", "eye_l_lower.y4", "iris_r.pupil", "sclera.r", "lashes_l.length",
                 "teeth.show", "nostril_r.x1", "nose_bridge.w1", "brow_l.mid_width", "beard.opacity",
                 "glasses.type", "headwear.type", "hair_style.curl"):
        schema.index(name)


def test_group_table_in_docs_matches_schema():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    for group, n in schema.group_counts().items():
        assert f"| `{group}` | {n} |" in text, f"docs/schema.md table is stale for {group}"


def test_normalize_roundtrip_and_range():
    p = schema.sample(50, seed=3)
    n = schema.normalize(p)
    assert n.min() >= -1.0 - 1e-5 and n.max() <= 1.0 + 1e-5
    np.testing.assert_allclose(schema.denormalize(n), p, rtol=1e-5, atol=1e-4)
    face = schema.normalize(p[:, schema.FACE], schema.FACE)
    np.testing.assert_allclose(face, n[:, schema.FACE], atol=1e-6)


def test_mirror_is_an_involution_and_stays_in_range():
    p = schema.sample(100, seed=5)
    m = schema.mirror(p)
    np.testing.assert_allclose(schema.mirror(m), p, atol=1e-6)
    for row in m:
        schema.validate(row)
    # the default face is symmetric except the one-sided artistic elements
    d = schema.default()
    diff = np.abs(schema.mirror(d) - d) > 1e-5
    asym = {schema.FEATURE_OF[i] for i in np.flatnonzero(diff)}
    assert asym <= {"nose_bridge", "nose_shadow", "nose_highlight", "forehead_highlight",
                    "hair_strand0", "hair_strand1", "eye_l_crease", "eye_r_crease"}, asym


def test_mirror_swaps_sides():
    d = schema.default()
    d[schema.index("iris_l.radius")] = 0.06
    m = schema.mirror(d)
    assert m[schema.index("iris_r.radius")] == pytest.approx(0.06)
    assert m[schema.index("iris_r.cx")] == pytest.approx(-d[schema.index("iris_l.cx")])


def test_mirror_renders_as_a_flipped_picture():
    for p in schema.sample(6, seed=11):
        a = render(p, 256, background="white").astype(np.float32)
        b = render(schema.mirror(p), 256, background="white").astype(np.float32)[:, ::-1]
        # only the deliberate light-from-the-upper-left glints differ
        assert np.abs(a - b).mean() < 1.5, np.abs(a - b).mean()


def test_validate_rejects_bad_vectors_with_names():
    d = schema.default()
    with pytest.raises(SchemaError, match="629"):
        schema.validate(d[:-1])
    with pytest.raises(SchemaError, match="629"):
        schema.validate(np.zeros((2, 629)))
    bad = d.copy()
    bad[10] = np.nan
    with pytest.raises(SchemaError, match=schema.NAMES[10].replace(".", r"\.")):
        schema.validate(bad)
    bad[10] = np.inf
    with pytest.raises(SchemaError, match="infinity|inf"):
        schema.validate(bad)
    bad[10] = 50.0
    with pytest.raises(SchemaError, match="outside its range"):
        schema.validate(bad)
    with pytest.raises(SchemaError):
        schema.validate(["a"] * 629)
    assert isinstance(SchemaError("x"), ValueError)


def test_validate_accepts_exactly_the_tolerance_interval():
    """The one-pass check of the common case and the detailed one agree at
    the edges: lo - tol and hi + tol are in, the next float out is not; and
    render(), which leaves the check to the native avz_validate, agrees too."""
    tol = 1e-4 * (schema.HI - schema.LO) + 1e-6
    lo, hi = schema.LO - tol, schema.HI + tol
    for j in (0, 17, 300, 628):
        for v, ok in ((lo[j], True), (hi[j], True), (np.nextafter(lo[j], np.float32(-np.inf)), False),
                      (np.nextafter(hi[j], np.float32(np.inf)), False), (np.nan, False), (np.inf, False),
                      (-np.inf, False)):
            p = schema.DEFAULT.copy()
            p[j] = v
            if ok:
                np.testing.assert_array_equal(schema.validate(p), p)
                assert render(p, 8).shape == (8, 8, 4)
            else:
                for fn in (schema.validate, lambda q: render(q, 8)):
                    with pytest.raises(SchemaError, match=schema.NAMES[j].replace(".", r"\.")):
                        fn(p)


def test_clip_makes_anything_valid():
    rng = np.random.default_rng(0)
    wild = rng.normal(0, 10, (20, 629)).astype(np.float32)
    wild[0, :50] = np.nan
    for row in schema.clip(wild):
        schema.validate(row)
    assert schema.clip(wild)[0, 0] == schema.DEFAULT[0]  # NaN -> default


def test_named_access():
    p = schema.Params(schema.default())
    p["iris_l.radius"] = 0.05
    assert p.feature("iris_l")["radius"] == pytest.approx(0.05)
    back = schema.Params.from_dict(p.to_dict())
    np.testing.assert_array_equal(back.array, p.array)
    with pytest.raises(KeyError, match="did you mean"):
        p["iris_l.radius_typo"]
    assert schema.points(p.array, "face").shape == (14, 2)


def test_sample_is_deterministic_valid_and_diverse():
    a = schema.sample(300, seed=0)
    assert a.shape == (300, 629) and a.dtype == np.float32
    np.testing.assert_array_equal(a, schema.sample(300, seed=0))
    assert not np.array_equal(a[:10], schema.sample(10, seed=1))
    for row in a:
        schema.validate(row)
    col = lambda n: a[:, schema.index(n)]  # noqa: E731
    assert len(set(col("hair_style.bank_id").astype(int))) >= 10  # hairstyle families
    assert (col("glasses.type") > 0).mean() > 0.1
    assert (col("beard.opacity") > 0.5).mean() > 0.03
    assert (col("headwear.type") > 0).mean() > 0.02
    assert (col("teeth.show") > 0).mean() > 0.03
    skin_l = a[:, schema.index("face.r")] + a[:, schema.index("face.g")] + a[:, schema.index("face.b")]
    assert skin_l.max() - skin_l.min() > 1.2  # light to dark skin
    width = a[:, schema.index("face.x5")] - a[:, schema.index("face.x9")]
    length = a[:, schema.index("face.y0")] - a[:, schema.index("face.y7")]
    ratio = length / width
    assert ratio.max() - ratio.min() > 0.35  # round to long faces
    with pytest.raises(ValueError):
        schema.sample(-1)


def test_schema_json_is_shipped_as_package_data():
    from importlib import resources

    doc = json.loads(resources.files("avatarizer").joinpath("data/schema.json").read_text())
    assert doc["count"] == 629 and doc["version"] == schema.VERSION


def test_an_unknown_feature_is_an_unknown_parameter_error():
    """``Params.feature`` raised a bare KeyError for a name that is no
    feature; now the SDK's ``UnknownParameterError`` (a KeyError and a
    ValueError) with the names it might mean."""
    p = schema.Params(schema.default())
    assert set(p.feature("iris_l")) >= {"cx", "cy", "radius"}
    for bad, hint in (("iris", "iris_l"), ("nope", "the features are"), (3, "the features are")):
        with pytest.raises(schema.UnknownParameterError, match=hint):
            p.feature(bad)


def test_clip_rounds_categorical_values_as_the_renderer_reads_them():
    """``clip`` takes a categorical value to the whole number the renderer
    draws for it (native/avz.c: ``lroundf``, halves up; ``teeth.show`` over
    0.5): it rounded halves to even, so the midpoint of two avatars drew
    glasses, a hat or hair and its clipped copy did not. Clipping a valid
    vector changes no pixel."""
    p = schema.sample(1, seed=3)[0]
    cases = (("glasses.type", 0.5, 1), ("glasses.type", 1.5, 2), ("headwear.type", 2.5, 3),
             ("hair_style.layers", 0.5, 1), ("teeth.show", 0.5, 0), ("teeth.show", 0.51, 1),
             ("glasses.type", float(np.float32(0.49999997)), 0), ("headwear.type", 0.49, 0))
    for name, v, want in cases:
        q = p.copy()
        q[schema.index(name)] = v
        c = schema.clip(q)
        assert c[schema.index(name)] == want, (name, v)
        np.testing.assert_array_equal(render(c, 96), render(q, 96), err_msg=f"{name}={v}")
    mid = (schema.sample(1, seed=4)[0] + schema.sample(1, seed=5)[0]) / 2  # any mixture draws as its clipped copy
    np.testing.assert_array_equal(render(schema.clip(mid), 96), render(mid.astype(np.float32), 96))


def test_teeth_show_is_read_as_the_renderer_draws_it():
    """``teeth.show`` is drawn only over 0.5 (``avz.c``): ``schema.category``
    said 1 of a 0.5 whose picture shows no teeth, where ``clip`` said 0."""
    from avatarizer import render

    i = schema.index("teeth.show")
    # a sampled avatar whose mouth shows teeth when asked to
    p = next(q for q in schema.sample(40, seed=3)
             if not np.array_equal(render(np.where(np.arange(q.size) == i, 0.0, q), 96),
                                   render(np.where(np.arange(q.size) == i, 1.0, q), 96)))
    pics = {}
    for v in (0.0, 0.5, 0.5000001, 1.0):
        q = p.copy()
        q[i] = v
        pics[v] = render(q, 96)
        assert schema.category(q, "teeth.show") == int(schema.clip(q)[i]) == int(v > 0.5), v
    assert np.array_equal(pics[0.5], pics[0.0]) and not np.array_equal(pics[0.5], pics[1.0])
    # read as the float32 the renderer reads: a float64 0.50000001 is its 0.5
    q = p.astype(np.float64)
    q[i] = 0.50000001
    assert schema.category(q, "teeth.show") == 0 == int(schema.clip(q)[i])
    q[i] = np.nan  # (refused as any category's NaN is)
    with pytest.raises(ValueError):
        schema.category(q, "teeth.show")


def test_categorical_readers_round_halves_up_as_the_renderer():
    """A categorical value that is not a whole number (two avatars
    interpolated, a network's output) is drawn as ``floor(x + 0.5)`` (the
    native ``lroundf``, ``schema.clip``); readers that used Python's
    ``round`` (halves to even) said "no glasses" of glasses drawn at 0.5 and
    described another hat's crown at 2.5 (a review, session 72)."""
    from avatarizer import hair as H
    from avatarizer import prior as P

    p = schema.default()
    for name, v, want in (("glasses.type", 0.5, 1), ("headwear.type", 2.5, 3), ("headwear.type", 4.5, 5),
                          ("hair_style.layers", 0.5, 1), ("glasses.type", 1.49, 1)):
        q = p.copy()
        q[schema.index(name)] = v
        assert schema.category(q, name) == want == schema.clip(q)[schema.index(name)], (name, v)
    q = p.copy()
    q[schema.index("headwear.type")] = 2.5
    whole = p.copy()
    whole[schema.index("headwear.type")] = 3.0
    assert P.hat_crown(q) == P.hat_crown(whole)
    q = p.copy()
    q[schema.index("glasses.type")] = 0.5
    public = {"glasses": {"value": "none", "probability": 0.9, "probabilities": {"none": 0.9, "reading": 0.1}}}
    assert H.attributes_as_drawn(public, q)["glasses"]["value"] == "reading"


def test_validate_version_refuses_a_version_it_does_not_read():
    """``schema.validate_version`` let a version this SDK does not read pass
    unchecked ('9.9.9', None), where README says any other version is
    refused (``Avatar.from_json`` and ``animate`` check it themselves; a
    review, session 72)."""
    p = schema.default()
    for v in schema.READS:
        assert schema.validate_version(p, v).shape == (schema.PARAM_COUNT,)
    for v in ("9.9.9", None, 1.1, ""):
        with pytest.raises(schema.SchemaError, match="not one this SDK reads"):
            schema.validate_version(p, v)


def test_points_of_an_unknown_feature_is_an_unknown_parameter_error():
    """``schema.points(p, 'nope')`` raised a bare KeyError; the SDK's error
    for a name that does not exist is ``UnknownParameterError`` (a KeyError
    and a ValueError; a review, session 72)."""
    from avatarizer.schema import UnknownParameterError

    p = schema.default()
    for call in (lambda: schema.points(p, "nope"), lambda: schema.set_points(p, "nope", np.zeros((5, 2))),
                 lambda: schema.points(p, None)):
        with pytest.raises(UnknownParameterError, match="no feature named"):
            call()
    assert schema.points(p, "face").shape[-1] == 2
