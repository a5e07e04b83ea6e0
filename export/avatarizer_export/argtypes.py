"""argparse value types the export commands share: a bad value is a usage
error (exit 2, one line), never a quiet full run or a traceback."""
from __future__ import annotations

from avatarizer.checks import float_arg, int_arg

#: a whole number >= 1 / >= 0 (the SDK's checker, shared with the benchmarks)
positive_int = int_arg(1)
count = int_arg(0)

#: a precision target in (0, 1]
precision = float_arg(lambda v: 0.0 < v <= 1.0, "must be a precision in (0, 1], got {text!r:.60}")
#: a factor on every training's step count, in (0, 100]
steps_scale = float_arg(lambda v: 0 < v <= 100, "must be a number in (0, 100], got {text!r:.60}")
#: the artist's exaggeration: a number in [0.5, 2] (``ArtistStyle``'s range)
exaggeration = float_arg(lambda v: 0.5 <= v <= 2.0, "must be a number from 0.5 to 2, got {text!r:.60}")
#: a loss weight: a finite number >= 0
weight = float_arg(lambda v: v >= 0.0, "must be a finite number >= 0, got {text!r:.60}")
#: a random seed: a whole number from 0 to 2**32 - 1 (numpy's range)
seed = int_arg(0, 2 ** 32 - 1, out_of_range="must be from 0 to 2**32 - 1, not {v}")


def run_name(text: str) -> str:
    """The name of a training run: a folder directly under ``runs/`` (no ``/``, ``\\``, ``..``, nothing
    empty or hidden): a name with a path in it wrote the run's checkpoint and plot outside ``runs/``,
    over whatever files were there (a review, session 64)."""
    import argparse

    if not text or text.startswith(".") or any(c in text for c in "/\\\0"):
        raise argparse.ArgumentTypeError(f"must be a run's name (a folder under runs/, no path), got {text!r:.60}")
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"must be a run's name without blanks at its ends, got {text!r:.60}")
    if text in RESERVED_RUNS:  # (a run named export wrote its checkpoint into the folder onnx builds in)
        raise argparse.ArgumentTypeError(f"{text!r:.60} is the folder runs/{text}/ of "
                                         f"`avatarizer-export {RESERVED_RUNS[text]}`: choose another name")
    return text


#: folders under runs/ that other commands own (the run names they are refused as)
RESERVED_RUNS = {"export": "onnx / quantize / ship", "attributes": "attributes"}
