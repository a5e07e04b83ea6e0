"""The shipping gate's drift metrics between two runs of one model: the same
file on two devices (CUDA against the CPU), or a candidate against its
reference, output by output as the manifest describes them.

:func:`compare_outputs` picks the metrics from what the outputs are:

* the face parameters (an output named ``face``, normalised to [-1, 1]):
  ``param_l1``, the mean |Δ| (the image model's gate, ``gate_report.json``);
* the attribute regressor's outputs (``hair_colour``, ``glasses``,
  ``binary``; ``regress`` with age in years): ``prob_drift``, the mean |Δ|
  of the class probabilities, and ``age_drift_years``, the mean |Δ| of age
  (its int8 gate in the manifest);
* anything else: ``mean_abs``, the largest per-output mean |Δ|.

Thresholds come from the entry's own ``quality_gate`` where it names the
metric, else from :data:`DEFAULT_THRESHOLDS`. ``max_abs`` (the largest
single difference) is reported, never gated: one value of 483 may move a
little with no visible change.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

#: Thresholds used when a model's manifest entry names none for a metric.
DEFAULT_THRESHOLDS = {"param_l1": 0.01, "prob_drift": 0.02, "age_drift_years": 1.0, "mean_abs": 0.01}
PROBABILITY_OUTPUTS = ("hair_colour", "glasses", "binary")


def _mean_abs(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def compare_outputs(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                    entry: Any = None) -> dict:
    """``{"metrics", "thresholds", "failed", "passed", "max_abs"}`` for two runs'
    outputs (name → array, the same names and shapes) of the model that
    ``entry`` (a :class:`~avatarizer.runtime.ModelEntry`, or None) describes.
    A NaN or infinite value in either fails. ``ValueError`` when the two do
    not hold the same outputs."""
    if set(reference) != set(candidate):
        raise ValueError(f"the runs hold different outputs: {sorted(reference)} vs {sorted(candidate)}")
    for k in reference:
        if np.shape(reference[k]) != np.shape(candidate[k]):
            raise ValueError(f"output {k!r}: shapes {np.shape(reference[k])} and {np.shape(candidate[k])} differ")
    metrics: dict[str, float] = {}
    if "face" in reference:
        metrics["param_l1"] = _mean_abs(reference["face"], candidate["face"])
    probs = [k for k in PROBABILITY_OUTPUTS if k in reference]
    if probs:
        metrics["prob_drift"] = float(np.mean([_mean_abs(reference[k], candidate[k]) for k in probs]))
    if "regress" in reference and probs:
        metrics["age_drift_years"] = _mean_abs(np.asarray(reference["regress"])[:, 0],
                                               np.asarray(candidate["regress"])[:, 0])
    if not metrics:
        metrics["mean_abs"] = max(_mean_abs(reference[k], candidate[k]) for k in reference)
    raw = getattr(entry, "raw", None) or {}
    named = (raw.get("quality_gate") or {}).get("thresholds") or {}
    thresholds = {k: float(named.get(k, DEFAULT_THRESHOLDS[k])) for k in metrics}
    finite = all(np.isfinite(np.asarray(v, np.float64)).all() for run in (reference, candidate) for v in run.values())
    failed = [k for k, v in metrics.items() if not v <= thresholds[k]] + ([] if finite else ["finite"])
    worst = max(float(np.max(np.abs(np.asarray(reference[k], np.float64) - np.asarray(candidate[k], np.float64))))
                for k in reference) if reference else 0.0
    return {"metrics": metrics, "thresholds": thresholds, "failed": failed, "passed": not failed, "max_abs": worst}
