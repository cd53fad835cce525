"""Use-case specs: YAML files validated into typed models, and their discovery.

A spec declares everything about one model: raw sources and their schemas, the entity, timestamps, the label,
features, expectations and the settings of each pipeline stage. DAGs are generated from every spec found, so
adding a model means adding a spec. Every model forbids unknown keys: a typo is an error, not a silent default.
A bad spec raises SpecError naming the file, the dotted field and the reason.

  base      what every model shares (unknown keys, cross-field problems)
  data      sources, columns, entity, label, features, expectations
  stages    training, scoring and monitoring settings
  events    an event entity (each event scored as of its own time): history features, outcome label
  usecase   the use case as a whole, and the checks between its sections
  loading   YAML -> models, error messages, discovery
"""

from batchml.specs.base import IDENTIFIER, ColumnName, Identifier
from batchml.specs.data import (
    NUMERIC_TYPES,
    AggregateSpec,
    ColumnLabelSpec,
    ColumnSpec,
    CustomFeaturesSpec,
    EntitySpec,
    EventLabelSpec,
    ExpectationSpec,
    ExpectationsSpec,
    FeatureKind,
    FeaturesSpec,
    SourceSpec,
)
from batchml.specs.events import (
    EventEntitySpec,
    EventFeaturesSpec,
    EventOutcomeLabelSpec,
    HistorySpec,
    LabelRateSpec,
    UsualSpec,
)
from batchml.specs.loading import Discovery, discover, discover_specs, get_spec, load_spec, parse_spec, spec_files
from batchml.specs.stages import (
    BUDGET_METRICS,
    LOWER_IS_BETTER,
    CandidateSpec,
    ConfidenceSpec,
    FairnessFloorSpec,
    FairnessMetric,
    FairnessSpec,
    GateSpec,
    MetricName,
    RandomSplitSpec,
    ReasonCodeSpec,
    RuleSpec,
    SearchSpace,
    TimeSplitSpec,
    TrainingSpec,
    WaitSpec,
)
from batchml.specs.usecase import AS_OF_COLUMN, CardSpec, UseCaseSpec

__all__ = [
    "AS_OF_COLUMN", "IDENTIFIER", "LOWER_IS_BETTER", "NUMERIC_TYPES", "AggregateSpec", "CandidateSpec", "ColumnLabelSpec",
    "ColumnName", "ColumnSpec", "CustomFeaturesSpec", "EntitySpec", "EventLabelSpec", "ExpectationSpec",
    "ExpectationsSpec", "FeatureKind", "FeaturesSpec", "GateSpec", "Identifier", "MetricName", "RandomSplitSpec",
    "ReasonCodeSpec", "SearchSpace", "SourceSpec", "TimeSplitSpec", "TrainingSpec", "UseCaseSpec", "WaitSpec", "discover_specs",
    "get_spec", "load_spec", "Discovery", "discover", "parse_spec", "spec_files",
    "CardSpec", "ConfidenceSpec", "FairnessFloorSpec", "FairnessMetric", "FairnessSpec",
    "BUDGET_METRICS", "RuleSpec", "EventEntitySpec", "EventFeaturesSpec", "EventOutcomeLabelSpec", "HistorySpec", "LabelRateSpec", "UsualSpec",
]
