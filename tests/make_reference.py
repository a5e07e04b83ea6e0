"""Regenerates tests/data/reference_default_192.png after a deliberate visual change.

    python tests/make_reference.py     # then look at the picture before committing it
"""
from pathlib import Path

from PIL import Image

from avatarizer import render, schema

out = Path(__file__).resolve().parent / "data" / "reference_default_192.png"
Image.fromarray(render(schema.default(), 192, background="white")).save(out)
print(f"wrote {out}")
