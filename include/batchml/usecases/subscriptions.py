"""Custom features of the `subscriptions` use case of docs/add-a-use-case.md (docs/examples/subscriptions.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from batchml.features import FeatureContext


def usage_features(ctx: FeatureContext) -> DataFrame:
    """Usage and price per seat: a 40-seat account with 40 logins is idle, a 1-seat one is busy.

    Returns the entity key plus exactly the columns the spec declares under features.custom.columns.
    """
    from pyspark.sql import functions as F

    accounts = ctx.population  # the rows of the snapshot the features are built from (nothing after as_of)
    seats = F.greatest(F.col("seats"), F.lit(1)).cast("double")
    return accounts.select(
        ctx.spec.entity.key,
        (F.col("logins_30d") / seats).alias("logins_per_seat"),
        (F.col("monthly_fee") / seats).alias("fee_per_seat"),
    )
