"""What every spec model shares: unknown keys refused (with the valid ones listed), strict types, frozen values,
and checks across a model's own fields reported with their paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
"""Names that end up in paths, DAG ids and SQL identifiers: lower-case letters, digits, underscores."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER)]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
"""Column names: quoted by every SQL dialect they reach, so reserved words and mixed case are allowed."""

Problem = tuple[str, str]
"""(dotted path relative to the model, reason)."""

FeatureKind = Literal["categorical", "numeric", "count", "amount", "share", "days", "ratio"]
"""What a feature column holds; sets the checks run on it (defined here: every kind of features shares it)."""


def words(name: str) -> str:
    """A column or source name as words: `support_tickets` -> "support tickets"."""
    return name.replace("_", " ").strip()


class UnknownKey:
    """The value of a key the model does not declare, carrying the valid keys for the error message."""

    def __init__(self, value: Any, valid: list[str]):
        self.value, self.valid = value, valid

    def __repr__(self) -> str:
        return repr(self.value)


class SpecModel(BaseModel):
    """Base of every spec model. Subclasses list cross-field problems in `problems()`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _mark_unknown_keys(cls, data: Any) -> Any:
        # an unknown key still fails as `extra_forbidden`; its value is wrapped so the message can list valid keys
        if isinstance(data, dict):
            fields = cls.model_fields
            return {k: v if k in fields else UnknownKey(v, list(fields)) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo):
        # inside a whole spec, the root collects every model's problems at once (see all_problems)
        if not (info.context or {}).get("collect_problems"):
            raise_problems(self.problems())
        return self

    def problems(self) -> list[Problem]:
        """Checks across this model's fields that a single field's type cannot express."""
        return []

    def all_problems(self, path: str = "") -> list[Problem]:
        """This model's problems and those of every model inside it, with paths from this model."""
        out = [(join_path(path, rel), why) for rel, why in self.problems()]
        for name in type(self).model_fields:
            out += _nested_problems(getattr(self, name), join_path(path, name))
        return out


def _nested_problems(value: Any, path: str) -> list[Problem]:
    if isinstance(value, SpecModel):
        return value.all_problems(path)
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _nested_problems(v, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nested_problems(v, join_path(path, str(k)))]
    return []


def join_path(base: str, relative: str) -> str:
    """`features` + `aggregates[0]` -> `features.aggregates[0]`; `sum` + `[0]` -> `sum[0]`."""
    if not relative:
        return base
    if not base:
        return relative
    return base + relative if relative.startswith("[") else f"{base}.{relative}"


def raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise PydanticCustomError("spec_problems", "{count} problem(s)", {"count": len(problems),
                                                                          "problems": problems})


def kind_or(default: str, *others: str) -> Discriminator:
    """Discriminator of a union of specs: the `kind` key, or `default` when a spec leaves it out."""

    def pick(value) -> str:
        if isinstance(value, dict):
            kind = value.get("kind", default)
            return kind.value if isinstance(kind, UnknownKey) else kind
        return getattr(value, "kind", default)

    kinds = ", ".join(repr(k) for k in (default, *others))
    return Discriminator(pick, custom_error_type="unknown_kind", custom_error_message=f"kind must be one of {kinds}")
