"""The shipping gate's drift metrics between two runs of one model: the same
file on two devices (CUDA against the CPU), or a candidate against its
reference, output by output as the manifest describes them.

:func:`compare_outputs` picks the metrics from what the outputs are:

* the face parameters (an output named ``face``, normalised to [-1, 1]):
  ``param_l1``, the mean |Δ| (the image model's gate, ``gate_report.json``);
* the attribute regressor's outputs (``hair_colour``, ``glasses``,
  ``binary``, ``hair_long``; ``regress`` with age in years): ``prob_drift``,
  the mean |Δ| of the probabilities, and ``age_drift_years``, the mean |Δ|
  of age (its int8 gate in the manifest);
* every other output or column beside those: ``other_drift``, the largest
  mean |Δ| in units of its span (the manifest's ``units``: ``Monk 1..10``
  spans 9);
* a model with none of those outputs: ``mean_abs``, the largest per-output
  mean |Δ|.

Thresholds come from the entry's own ``quality_gate`` where it names the
metric, else from :data:`DEFAULT_THRESHOLDS`. ``max_abs`` (the largest
single difference) is reported, never gated: one value of 483 may move a
little with no visible change.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

#: Thresholds used when a model's manifest entry names none for a metric.
DEFAULT_THRESHOLDS = {"param_l1": 0.01, "prob_drift": 0.02, "age_drift_years": 1.0, "other_drift": 0.02,
                      "mean_abs": 0.01}
PROBABILITY_OUTPUTS = ("hair_colour", "glasses", "binary", "hair_long")
_RANGE = re.compile(r"(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)")


def _mean_abs(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _unit_span(entry: Any, name: str, column: int | None = None) -> float:
    """The span of an output's (column's) unit as its manifest spec gives it
    ("Monk 1..10": 9, "0..1": 1); 1.0 when it names none."""
    for spec in getattr(entry, "outputs", None) or ():
        if isinstance(spec, Mapping) and spec.get("name") == name:
            units = spec.get("units")
            if isinstance(units, (list, tuple)):
                j = 0 if column is None else column
                units = units[j] if j < len(units) else None
            m = _RANGE.search(units) if isinstance(units, str) else None
            if m and float(m.group(2)) > float(m.group(1)):
                return float(m.group(2)) - float(m.group(1))
    return 1.0


def compare_outputs(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                    entry: Any = None) -> dict:
    """``{"metrics", "thresholds", "failed", "passed", "max_abs"}`` for two runs'
    outputs (name → array, the same names and shapes) of the model that
    ``entry`` (a :class:`~avatarizer.runtime.ModelEntry`, or None) describes.
    Every output counts: what the named metrics leave out (the attribute
    regressor's skin tone, its hair-shape columns) is ``other_drift``, the
    largest mean |Δ| in units of the output's span. A NaN or infinite value
    in either fails. ``ValueError`` when there is nothing to compare or the
    two do not hold the same outputs and shapes."""
    if not reference:
        raise ValueError("no outputs to compare")
    if set(reference) != set(candidate):
        raise ValueError(f"the runs hold different outputs: {sorted(reference)} vs {sorted(candidate)}")
    ref = {k: np.asarray(v, np.float64) for k, v in reference.items()}
    cand = {k: np.asarray(v, np.float64) for k, v in candidate.items()}
    for k in ref:
        if ref[k].shape != cand[k].shape:
            raise ValueError(f"output {k!r}: shapes {ref[k].shape} and {cand[k].shape} differ")
        if ref[k].size == 0:
            raise ValueError(f"output {k!r} is empty")
    metrics: dict[str, float] = {}
    rest = [(k, ref[k], cand[k], _unit_span(entry, k)) for k in ref]
    if "face" in ref:
        metrics["param_l1"] = _mean_abs(ref["face"], cand["face"])
    probs = [k for k in PROBABILITY_OUTPUTS if k in ref]
    if probs:
        metrics["prob_drift"] = float(np.mean([_mean_abs(ref[k], cand[k]) for k in probs]))
    covered = ({"face"} if "face" in ref else set()) | set(probs)
    if "regress" in ref and probs:
        r, c = np.atleast_2d(ref["regress"]), np.atleast_2d(cand["regress"])
        metrics["age_drift_years"] = _mean_abs(r[:, 0], c[:, 0])
        covered.add("regress")
        rest += [(f"regress[{j}]", r[:, j], c[:, j], _unit_span(entry, "regress", j)) for j in range(1, r.shape[1])]
    rest = [x for x in rest if x[0] not in covered]
    if metrics and rest:
        metrics["other_drift"] = max(_mean_abs(a, b) / span for _, a, b, span in rest)
    if not metrics:
        metrics["mean_abs"] = max(_mean_abs(ref[k], cand[k]) for k in ref)
    raw = getattr(entry, "raw", None) or {}
    named = (raw.get("quality_gate") or {}).get("thresholds") or {}
    thresholds = {k: float(named.get(k, DEFAULT_THRESHOLDS[k])) for k in metrics}
    finite = all(np.isfinite(v).all() for run in (ref, cand) for v in run.values())
    failed = [k for k, v in metrics.items() if not v <= thresholds[k]] + ([] if finite else ["finite"])
    worst = max(float(np.max(np.abs(ref[k] - cand[k]))) for k in ref)
    return {"metrics": metrics, "thresholds": thresholds, "failed": failed, "passed": not failed, "max_abs": worst}
