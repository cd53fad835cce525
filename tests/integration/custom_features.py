"""A custom feature function as a use case would write one (imported by module:function from a spec)."""

from pyspark.sql import functions as F


def late_night_share(ctx):
    """Share of the last 5 days' events between 00:00 and 06:00 UTC (0 when there are none)."""
    key = ctx.spec.entity.key
    events = ctx.events("events", days=5)
    night = F.when(F.hour("ts") < 6, 1.0).otherwise(0.0)
    per_user = events.groupBy(key).agg(F.avg(night).alias("ev_night_share_5d"))
    return ctx.population.select(key).join(per_user, key, "left").fillna({"ev_night_share_5d": 0.0})


def wrong_columns(ctx):
    return ctx.population.select(ctx.spec.entity.key, F.lit(1).alias("surprise"))
