"""Exact TreeSHAP for the boosters' trees, from per-leaf tables: the same values as the boosters' own
`pred_contrib(s)` (path-dependent TreeSHAP), many times faster on large ensembles.

Why: reason codes are exact SHAP values, and the boosters compute them in O(trees x leaves x depth^2) per row
(about 2.7 ms of CPU per row for a 500-tree, 31-leaf LightGBM): at a million scored rows that was most of the
scoring run. This is the "v2" idea of Fast TreeSHAP (Yang, 2021): a leaf's share of a feature's SHAP value
depends on the row only through which of the conditions on the leaf's path the row meets, so it can be tabulated
once per model (2^d entries for the d distinct features on the path) and a row then costs one pass over each
tree's nodes plus a table lookup per leaf.

For a leaf with value v and distinct path features U (|U| = d), let a_u be the product of the cover fractions of
the branches taken on feature u's splits (what the leaf gets when u is unknown) and b_u = 1 if the row meets all of
them. The leaf's term of the path-dependent value function is v * prod_{u in S} b_u * prod_{u not in S} a_u, and
its Shapley value for feature j is

    v * (b_j - a_j) * sum_{k} k! (d-1-k)! / d! * [z^k] prod_{u in B, u != j} (z + a_u) * prod_{u not in B, u != j} a_u

with B the set of features whose conditions the row meets. Only numeric splits (how `batchml.models` encodes every
feature) are tabulated; a model with another kind of split is explained by its booster, as before.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import numba
import numpy as np

TABLE_MAX_FEATURES = 10
"""Leaves with more distinct features on their path than this are computed per row (2^d x d table entries each);
10 is the fastest on a 500-tree, 31-leaf LightGBM (180 MB of tables)."""
TABLE_MAX_BYTES = 512 * 2**20
"""A larger ensemble tabulates only its shallower leaves, so that the tables stay within this."""
MAX_PATH_FEATURES = 62
"""The row's conditions are bits of one 64-bit mask."""

# How a split sends a missing value: the booster's default branch (XGBoost; LightGBM `NaN`), or LightGBM's `None`
# (NaN is read as 0.0 and compared) and `Zero` (NaN and 0.0 take the default branch).
MISSING_DEFAULT, MISSING_AS_ZERO, ZERO_DEFAULT = 0, 1, 2


class UnsupportedTrees(Exception):
    """The model has splits the tables do not cover (categorical sets, a path over 62 features)."""


@dataclass
class TreeTables:
    """An ensemble's trees as flat arrays, and each leaf's SHAP table."""

    n_features: int
    dtype: type  # what the booster compares in: float32 (XGBoost) or float64 (LightGBM)
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    strict: np.ndarray  # x < threshold goes left (XGBoost); else x <= threshold (LightGBM)
    bit: np.ndarray  # bit of the split's feature in the mask of its path; for a leaf: its index
    leaf_value: np.ndarray
    leaf_depth: np.ndarray  # d: distinct features on the leaf's path
    leaf_start: np.ndarray  # into leaf_features / leaf_zero
    leaf_features: np.ndarray
    leaf_zero: np.ndarray  # a_u of each of the leaf's features, in bit order
    table_start: np.ndarray  # into table, -1: computed per row
    table: np.ndarray
    max_depth: int

    def contributions(self, X) -> np.ndarray:
        """SHAP values per input column (log-odds, bias term left out), rows x columns."""
        data = np.ascontiguousarray(np.asarray(X, dtype=self.dtype), dtype="float64")
        if data.ndim != 2 or data.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} input columns, got shape {data.shape}")
        return _contributions(data, self.roots, self.feature, self.threshold, self.left, self.right,
                              self.default_left, self.missing, self.strict, self.bit, self.leaf_value,
                              self.leaf_depth, self.leaf_start, self.leaf_features, self.leaf_zero,
                              self.table_start, self.table, 2 * self.max_depth + 4, _shapley_weights())


def from_lightgbm(booster, num_iteration: int | None = None) -> TreeTables:
    """Tables of a LightGBM binary model's first `num_iteration` trees (all when None)."""
    dump = booster.dump_model(num_iteration=num_iteration)
    nodes: list[dict] = []
    roots: list[int] = []

    def add(root: dict) -> int:
        """Append one tree's nodes (iteratively: a leaf-wise tree can be deeper than Python's recursion limit)."""
        first = len(nodes)
        pending: list[tuple[dict, int | None, str]] = [(root, None, "")]
        while pending:
            node, parent, side = pending.pop()
            if parent is not None:
                nodes[parent][side] = len(nodes)
            if "leaf_value" in node:
                nodes.append({"value": node["leaf_value"], "cover": node.get("leaf_count", 1)})
                continue
            if node.get("decision_type", "<=") != "<=":
                raise UnsupportedTrees(f"LightGBM split {node.get('decision_type')!r} (categorical) is not tabulated")
            missing = {"NaN": MISSING_DEFAULT, "None": MISSING_AS_ZERO, "Zero": ZERO_DEFAULT}[node["missing_type"]]
            pending += [(node["right_child"], len(nodes), "right"), (node["left_child"], len(nodes), "left")]
            nodes.append({"feature": node["split_feature"], "threshold": float(node["threshold"]),
                          "default_left": bool(node["default_left"]), "missing": missing, "strict": False,
                          "cover": node["internal_count"]})
        return first

    for tree in dump["tree_info"]:
        roots.append(add(tree["tree_structure"]))
    return _tables(nodes, roots, len(dump["feature_names"]), np.float64)


def from_xgboost(booster, iterations: int | None = None) -> TreeTables:
    """Tables of an XGBoost binary model's first `iterations` boosting rounds (all when None)."""
    if iterations is not None and iterations < booster.num_boosted_rounds():
        booster = booster[:iterations]
    model = json.loads(booster.save_raw("json"))["learner"]
    trees = model["gradient_booster"]["model"]["trees"]
    nodes: list[dict] = []
    roots: list[int] = []
    for tree in trees:
        if any(int(t) != 0 for t in tree.get("split_type", [])):
            raise UnsupportedTrees("XGBoost categorical splits are not tabulated")
        left, right = tree["left_children"], tree["right_children"]
        offset = len(nodes)
        roots.append(offset)
        for i in range(len(left)):
            cover = float(tree["sum_hessian"][i])
            if left[i] == -1:
                nodes.append({"value": float(tree["split_conditions"][i]), "cover": cover})
            else:
                nodes.append({"feature": int(tree["split_indices"][i]),
                              "threshold": float(np.float32(tree["split_conditions"][i])),
                              "default_left": bool(tree["default_left"][i]), "missing": MISSING_DEFAULT,
                              "strict": True, "cover": cover, "left": offset + left[i], "right": offset + right[i]})
    return _tables(nodes, roots, int(model["learner_model_param"]["num_feature"]), np.float32)


def warm_up() -> None:
    """Compile (or load from numba's disk cache) the kernels, on a one-split tree."""
    stump = [{"feature": 0, "threshold": 0.0, "default_left": True, "missing": MISSING_DEFAULT, "strict": False,
              "cover": 2.0, "left": 1, "right": 2}, {"value": -1.0, "cover": 1.0}, {"value": 1.0, "cover": 1.0}]
    _tables(stump, [0], 1, np.float64).contributions(np.zeros((1, 1)))


def _tables(nodes: list[dict], roots: list[int], n_features: int, dtype) -> TreeTables:
    """Flat arrays of the nodes, each split's bit on its path and each leaf's features and table."""
    n = len(nodes)
    feature = np.full(n, -1, dtype=np.int64)
    threshold = np.zeros(n)
    left = np.full(n, -1, dtype=np.int64)
    right = np.full(n, -1, dtype=np.int64)
    default_left = np.zeros(n, dtype=np.bool_)
    missing = np.zeros(n, dtype=np.int8)
    strict = np.zeros(n, dtype=np.bool_)
    bit = np.zeros(n, dtype=np.int64)
    leaf_value, leaf_depth, leaf_start, leaf_features, leaf_zero = [], [], [], [], []
    max_depth = 0
    for root in roots:
        # depth-first, carrying the path's distinct features (in bit order) and their zero fractions
        stack: list[tuple[int, list[int], list[float], int]] = [(root, [], [], 0)]
        while stack:
            i, path, zero, depth = stack.pop()
            node = nodes[i]
            max_depth = max(max_depth, depth)
            if "feature" not in node:
                bit[i] = len(leaf_value)
                leaf_value.append(node["value"])
                leaf_depth.append(len(path))
                leaf_start.append(len(leaf_features))
                leaf_features.extend(path)
                leaf_zero.extend(zero)
                continue
            f = node["feature"]
            feature[i], threshold[i] = f, node["threshold"]
            left[i], right[i] = node["left"], node["right"]
            default_left[i], missing[i], strict[i] = node["default_left"], node["missing"], node["strict"]
            if f not in path:
                if len(path) >= MAX_PATH_FEATURES:
                    raise UnsupportedTrees(f"a path splits on more than {MAX_PATH_FEATURES} features")
                path, zero = [*path, f], [*zero, 1.0]
            bit[i] = path.index(f)
            for child in (node["left"], node["right"]):
                share = nodes[child]["cover"] / node["cover"] if node["cover"] > 0 else 0.0
                child_zero = list(zero)
                child_zero[bit[i]] *= share
                stack.append((child, path, child_zero, depth + 1))
    depth_arr = np.asarray(leaf_depth, dtype=np.int64)
    limit = TABLE_MAX_FEATURES
    while limit > 0 and _table_size(depth_arr, limit) * 8 > TABLE_MAX_BYTES:
        limit -= 1
    tabulated = depth_arr <= limit
    sizes = np.where(tabulated, (2 ** np.minimum(depth_arr, limit)) * depth_arr, 0)
    table_start = np.where(tabulated, np.concatenate([[0], np.cumsum(sizes)[:-1]]), -1).astype(np.int64)
    values = np.asarray(leaf_value, dtype=np.float64)
    starts = np.asarray(leaf_start, dtype=np.int64)
    zeros = np.asarray(leaf_zero, dtype=np.float64)
    table = np.zeros(int(sizes.sum()))
    _fill_tables(values, depth_arr, starts, zeros, table_start, table, _shapley_weights())
    return TreeTables(n_features, dtype, np.asarray(roots, dtype=np.int64), feature, threshold, left, right,
                      default_left, missing, strict, bit, values, depth_arr, starts,
                      np.asarray(leaf_features, dtype=np.int64), zeros, table_start, table, max_depth)


def _table_size(depth: np.ndarray, limit: int) -> int:
    small = depth[depth <= limit]
    return int(((2 ** small) * small).sum())


@functools.cache
def _shapley_weights() -> np.ndarray:
    """w[d, k] = k! (d-1-k)! / d!: the weight of a coalition of k of the other d-1 features."""
    size = MAX_PATH_FEATURES + 1
    w = np.zeros((size, size))
    for d in range(1, size):
        for k in range(d):
            w[d, k] = 1.0 / (d * math.comb(d - 1, k))
    return w


# The numeric kernels (numba: compiled on first use, cached on disk) ------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _leaf_phi(value, d, zero, mask, weights, coef, out):
    """The leaf's SHAP value for each of its d features, for a row meeting the conditions in `mask`: the product
    polynomial over the met features once, then one synthetic division per met feature (O(d^2))."""
    coef[0] = 1.0
    degree = 0
    rest = 1.0
    for u in range(d):
        if (mask >> u) & 1:
            coef[degree + 1] = 0.0
            for k in range(degree + 1, 0, -1):  # multiply by (z + a_u)
                coef[k] = coef[k - 1] + zero[u] * coef[k]
            coef[0] *= zero[u]
            degree += 1
        else:
            rest *= zero[u]
    total = 0.0
    for k in range(degree + 1):
        total += weights[d, k] * coef[k]
    for j in range(d):
        a = zero[j]
        if (mask >> j) & 1:
            # divide by (z + a_j) from the top (stable for a_j <= 1)
            q = coef[degree]
            divided = weights[d, degree - 1] * q
            for k in range(degree - 1, 0, -1):
                q = coef[k] - a * q
                divided += weights[d, k - 1] * q
            out[j] = value * (1.0 - a) * rest * divided
        elif a > 0.0:
            out[j] = -value * a * (rest / a) * total
        else:
            out[j] = 0.0


@numba.njit(cache=True, parallel=True)
def _fill_tables(values, depth, starts, zeros, table_start, table, weights):
    for leaf in numba.prange(len(values)):
        if table_start[leaf] < 0:
            continue
        d = depth[leaf]
        zero = zeros[starts[leaf]:starts[leaf] + d]
        coef = np.empty(d + 1)
        for mask in range(1 << d):
            begin = table_start[leaf] + mask * d
            _leaf_phi(values[leaf], d, zero, mask, weights, coef, table[begin:begin + d])


@numba.njit(cache=True, parallel=True)
def _contributions(X, roots, feature, threshold, left, right, default_left, missing, strict, bit, leaf_value,
                   leaf_depth, leaf_start, leaf_features, leaf_zero, table_start, table, stack_size, weights):
    n = X.shape[0]
    out = np.zeros((n, X.shape[1]))
    block = 128  # rows that go through one tree together, so its tables stay in the core's cache
    for b in numba.prange((n + block - 1) // block):
        node_stack = np.empty(stack_size, dtype=np.int64)
        mask_stack = np.empty(stack_size, dtype=np.int64)
        phi = np.empty(MAX_PATH_FEATURES)
        coef = np.empty(MAX_PATH_FEATURES + 1)
        for root in roots:
            for r in range(b * block, min(n, (b + 1) * block)):
                x = X[r]
                row = out[r]
                top = 0
                node_stack[0] = root
                mask_stack[0] = -1  # every condition met so far
                while top >= 0:
                    i = node_stack[top]
                    mask = mask_stack[top]
                    top -= 1
                    if feature[i] < 0:
                        leaf = bit[i]
                        d = leaf_depth[leaf]
                        if d == 0:
                            continue
                        start = leaf_start[leaf]
                        mask &= (np.int64(1) << d) - 1
                        if table_start[leaf] >= 0:
                            begin = table_start[leaf] + mask * d
                            for j in range(d):
                                row[leaf_features[start + j]] += table[begin + j]
                        else:
                            _leaf_phi(leaf_value[leaf], d, leaf_zero[start:start + d], mask, weights, coef, phi)
                            for j in range(d):
                                row[leaf_features[start + j]] += phi[j]
                        continue
                    v = x[feature[i]]
                    kind = missing[i]
                    if np.isnan(v) and kind != MISSING_DEFAULT:
                        v = 0.0
                    if (kind == MISSING_DEFAULT and np.isnan(v)) or (kind == ZERO_DEFAULT and abs(v) <= 1e-35):
                        goes_left = default_left[i]
                    elif strict[i]:
                        goes_left = v < threshold[i]
                    else:
                        goes_left = v <= threshold[i]
                    unmet = mask & ~(np.int64(1) << bit[i])
                    top += 1
                    node_stack[top] = left[i]
                    mask_stack[top] = mask if goes_left else unmet
                    top += 1
                    node_stack[top] = right[i]
                    mask_stack[top] = unmet if goes_left else mask
    return out
