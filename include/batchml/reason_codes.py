"""Reason codes analysts can read: the features that raise a score, the one that lowers it most, in plain words and
with their values as they were observed.

The contributions come from the model (`BatchModel.contributions`: SHAP values on the log-odds scale, one per
feature and row); this module turns one chunk of them into the score table's reason columns:

  * `reason_1..k`: the features with the largest *positive* contributions, strongest first. A score is explained by
    what pushes it up; a low score may have no such feature, and its reason columns are then NULL.
  * `protective_reason`: the feature with the most negative contribution (NULL when nothing lowers the score).
  * for each of them: the feature's name, its description in words (`features.descriptions`, the column's
    description, or words generated from the definition), its value as text and as a number (NULL for a category),
    and its impact.
  * a value that was missing and filled (`features.fill`) is shown as missing when the feature table has its
    `<column>_was_missing` indicator: no value, and "missing" in the description. The model saw the fill value;
    analysts should not mistake it for an observed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from batchml.specs import UseCaseSpec
from batchml.specs.data import MISSING_SUFFIX, singular, words

PROTECTIVE = "protective_reason"
"""Prefix of the columns of the feature that lowers the score most."""
SLOT_FIELDS = ("", "_description", "_value", "_number", "_impact")
"""Columns of one reason: `<slot>` (feature name), description, value (text), number, impact."""


@dataclass(frozen=True)
class FeatureWords:
    """What analysts read about one feature."""

    description: str
    categorical: bool = False
    indicator: str | None = None
    """Column of the feature table that is 1 where this feature's value was missing (and filled)."""
    fill: str | float | None = None


def feature_words(spec: UseCaseSpec) -> dict[str, FeatureWords]:
    """Every feature of the spec with its description in words, its kind and, for a filled column, its indicator."""
    feats = spec.features
    given = feats.descriptions
    ent = spec.sources.get(spec.entity.source)
    indicators = feats.indicator_columns()
    generated: dict[str, str] = {}
    for agg in feats.aggregates:
        generated.update(agg.feature_descriptions())
    if spec.is_event:
        generated.update(spec.event_features.feature_descriptions())
    if feats.tenure and ent is not None and ent.timestamp:
        generated["tenure_days"] = (f"days since the {singular(words(spec.entity.source))} started "
                                    f"({words(ent.timestamp)})")
    for name in indicators:
        column = name.removesuffix(MISSING_SUFFIX)
        generated[name] = f"{given.get(column) or _column_words(spec, column)} was missing (1 = yes, 0 = no)"
    out: dict[str, FeatureWords] = {}
    kinds = {**spec.feature_columns(), **indicators}
    for name, kind in kinds.items():
        text = given.get(name) or generated.get(name) or _column_words(spec, name)
        indicator = f"{name}{MISSING_SUFFIX}"
        filled = name in feats.fill and indicator in indicators
        out[name] = FeatureWords(text, kind == "categorical", indicator if filled else None,
                                 feats.fill.get(name) if filled else None)
    return out


def _column_words(spec: UseCaseSpec, name: str) -> str:
    """The entity column's own description, else its name as words."""
    ent = spec.sources.get(spec.entity.source)
    column = ent.columns.get(name) if ent is not None else None
    return (column.description.strip() if column is not None and column.description.strip() else words(name))


def reason_columns(features: list[str], contrib: np.ndarray, frame: pd.DataFrame, top: int,
                   about: dict[str, FeatureWords]) -> dict[str, np.ndarray]:
    """The reason columns of a chunk: `contrib` (rows x features, NaN for rows without codes) -> column -> values.

    `frame` holds the chunk's feature-table rows (the values shown, and the missing indicators)."""
    n = contrib.shape[0]
    k = min(top, contrib.shape[1])
    have = ~np.isnan(contrib).all(axis=1) if contrib.size else np.zeros(n, dtype=bool)
    if have.any() and not have.all():
        # only the rows with contributions (a fraud day: the top 1% of a million): the rest stay empty
        rows = np.flatnonzero(have)
        some = reason_columns(features, contrib[rows], frame.iloc[rows], top, about)
        out = {column: np.full(n, None, dtype=object) for column in some}
        for column, values in some.items():
            out[column][rows] = values
        return out
    dense = np.where(np.isnan(contrib), 0.0, contrib)
    order = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    impacts = np.take_along_axis(dense, order, axis=1)
    out: dict[str, np.ndarray] = {}
    for i in range(k):
        raises = have & (impacts[:, i] > 0)
        out.update(_slot(f"reason_{i + 1}", features, order[:, i], impacts[:, i], raises, frame, about))
    lowest = np.argmin(dense, axis=1) if contrib.shape[1] else np.zeros(n, dtype=int)
    low_impact = dense[np.arange(n), lowest] if contrib.shape[1] else np.zeros(n)
    out.update(_slot(PROTECTIVE, features, lowest, low_impact, have & (low_impact < 0), frame, about))
    return out


def _slot(prefix: str, features: list[str], index: np.ndarray, impact: np.ndarray, present: np.ndarray,
          frame: pd.DataFrame, about: dict[str, FeatureWords]) -> dict[str, np.ndarray]:
    n = len(index)
    name, text, value, number = (np.full(n, None, dtype=object) for _ in range(4))
    for j in np.unique(index[present]):
        feature = features[j]
        rows = present & (index == j)
        info = about.get(feature) or FeatureWords(words(feature))
        raw = frame[feature].to_numpy()[rows]
        name[rows] = feature
        shown = as_text(raw)
        numbers = np.full(len(raw), None, dtype=object) if info.categorical else _as_numbers(raw)
        described = np.full(len(raw), info.description, dtype=object)
        if info.indicator and info.indicator in frame.columns:
            missing = frame[info.indicator].to_numpy()[rows] == 1
            shown[missing], numbers[missing] = None, None
            described[missing] = f"{info.description}: missing (scored as {_fill_text(info.fill)}, the spec's fill)"
        value[rows], number[rows], text[rows] = shown, numbers, described
    impacts = np.where(present, impact, np.nan).astype(object)
    impacts[~present] = None
    return {prefix: name, f"{prefix}_description": text, f"{prefix}_value": value, f"{prefix}_number": number,
            f"{prefix}_impact": impacts}


def _fill_text(fill) -> str:
    return f"{fill:g}" if isinstance(fill, float) else str(fill)


def _as_numbers(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype="float64").astype(object)
    out[~np.isfinite(np.asarray(values, dtype="float64"))] = None
    return out


def as_text(values: np.ndarray) -> np.ndarray:
    """Feature values as short text (vectorised in Arrow: formatting millions of floats in Python is slow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype.kind == "f":
        values = np.round(values.astype("float64"), 4)
    return np.asarray(pc.cast(pa.array(values), pa.string()).to_numpy(zero_copy_only=False), dtype=object)
