"""`avatarizer-export eval`: the JSON contract of DESIGN.md on real labelled photos."""
from __future__ import annotations

import json

import numpy as np

from conftest import need_shared


def test_eval_json_contract_with_labels(capsys):
    folder = need_shared("data", "faces", "ffhq128-labelled")
    from avatarizer_export.cli import main

    rc = main(["eval", "--faces", str(folder), "--labels", str(folder / "attributes.jsonl"), "--heldout",
               "--limit", "12", "--methods", "artist", "--identity-n", "6", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["faces"] == 12 and 0 < res["aligned"] <= 12
    art = res["methods"]["artist"]
    assert {"identity_top1", "identity_n", "render_detect_rate", "skin_delta_e"} <= set(art)
    assert art["identity_n"] == 6 and 0.0 <= art["identity_top1"] <= 1.0
    # metrics that need pseudo ground truth are left out for the artist itself
    assert "render_lpips" not in art and "param_l1" not in art
    attrs = res["attributes"]
    for key in ("glasses", "sunglasses", "beard", "moustache", "headwear", "bald", "hair_color", "gender",
                "age_mae"):
        assert key in attrs, key
    for key in ("glasses", "beard", "hair_color", "gender"):
        assert np.isnan(attrs[key]) or 0.0 <= attrs[key] <= 1.0
    assert attrs["age_mae"] >= 0


def test_eval_refuses_a_missing_folder(tmp_path, capsys):
    from avatarizer_export.cli import main

    assert main(["eval", "--faces", str(tmp_path / "nope"), "--json"]) == 1
    assert "not a folder" in capsys.readouterr().err
