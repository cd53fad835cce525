"""Reading specs: YAML (duplicate keys refused) -> validated models, with errors that name the file, the dotted
field and the reason; discovery of every spec in a folder."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from batchml.errors import SpecError
from batchml.specs.base import IDENTIFIER, UnknownKey, join_path
from batchml.specs.usecase import UseCaseSpec

SPEC_SUFFIX = ".yaml"
# pydantic puts the chosen member's tag of a discriminated union into error locations: skip it in paths
_UNION_TAGS = {"label": {"event_within_horizon", "column", "event_outcome"}, "split": {"time", "random"},
               "entity": {"population", "event"}}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key repeated in one mapping (plain YAML keeps the last silently)."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}); a repeated key would silently "
                            "replace the first", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _dotted(loc: tuple) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i > 0 and part in _UNION_TAGS.get(str(loc[i - 1]), ()):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_errors(exc: ValidationError) -> list[str]:
    """One line per problem: `dotted.field: reason`."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = _dotted(loc) or "(top level)"
        value = err.get("input")
        if err["type"] == "spec_problems":
            lines += [f"{join_path(_dotted(loc), rel) or '(top level)'}: {why}" for rel, why in err["ctx"]["problems"]]
        elif err["type"] == "extra_forbidden":
            valid = f"; valid keys: {', '.join(value.valid)}" if isinstance(value, UnknownKey) else ""
            lines.append(f"{where}: unknown key{valid}")
        elif err["type"] == "missing":
            lines.append(f"{where}: required field is missing")
        else:
            shown = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
            lines.append(f"{where}: {err['msg']}{shown}")
    return lines


def parse_spec(text: bytes | str, path: Path) -> UseCaseSpec:
    """Validate the YAML text of a spec file; SpecError names `path`, the field and the reason."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise SpecError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec must be a YAML mapping with at least name, description, entity, ...")
    try:
        spec = UseCaseSpec.model_validate(data, context={"collect_problems": True})
    except ValidationError as exc:
        raise SpecError(f"{path}: invalid spec:\n  " + "\n  ".join(describe_errors(exc))) from None
    if spec.name != path.stem:
        raise SpecError(f"{path}: invalid spec:\n  name: {spec.name!r} must equal the file name {path.stem!r}")
    return spec


def load_spec(path: str | Path) -> UseCaseSpec:
    """Read and validate one spec file. Raises SpecError naming the file, the field and the reason."""
    path = Path(path)
    if path.suffix != SPEC_SUFFIX:
        raise SpecError(f"{path}: specs must end in {SPEC_SUFFIX} (rename it to {path.with_suffix(SPEC_SUFFIX).name}); "
                        "one naming rule keeps a spec from being silently skipped")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror})") from None
    spec = parse_spec(raw, path)
    spec._path = path.resolve()
    spec._sha256 = hashlib.sha256(raw).hexdigest()
    return spec


def spec_files(specs_dir: str | Path) -> list[Path]:
    """The spec files of a folder: `*.yaml`, and `*.yml` (which `load_spec` refuses loudly rather than ignore)."""
    folder = Path(specs_dir)
    if not folder.is_dir():
        raise SpecError(f"{folder}: specs folder not found; set BATCHML_SPECS_DIR to the folder holding *.yaml specs")
    return sorted([*folder.glob(f"*{SPEC_SUFFIX}"), *folder.glob("*.yml")])


@dataclass
class Discovery:
    """Every spec of a folder: the valid ones, and each invalid file with the reason (one bad spec never hides the
    others)."""

    specs: list[UseCaseSpec] = field(default_factory=list)
    errors: dict[Path, str] = field(default_factory=dict)


def discover(specs_dir: str | Path) -> Discovery:
    """Load every spec in a folder, sorted by name, keeping each bad spec's error apart. A source name means the same
    landed files for every use case, so two specs declaring one source differently are an error of the second."""
    out = Discovery()
    declared: dict[str, UseCaseSpec] = {}
    for path in spec_files(specs_dir):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            out.errors[path] = str(exc)
            continue
        conflicts = [f"{spec.path}: sources.{name}: declared differently in {declared[name].path}; source names are "
                     "shared by every use case in the landing zone, so rename one of them (or declare it identically)"
                     for name, src in spec.sources.items() if name in declared
                     and (declared[name].sources[name].kind, declared[name].sources[name].columns)
                     != (src.kind, src.columns)]
        if conflicts:
            out.errors[path] = conflicts[0]
            continue
        for name in spec.sources:
            declared.setdefault(name, spec)
        out.specs.append(spec)
    return out


def discover_specs(specs_dir: str | Path) -> list[UseCaseSpec]:
    """Load every spec in a folder, sorted by name. Any bad spec raises (it never silently vanishes)."""
    found = discover(specs_dir)
    if found.errors:
        raise SpecError("\n".join(found.errors.values()))
    return found.specs


def get_spec(specs_dir: str | Path, name: str) -> UseCaseSpec:
    """Load the spec of one use case by name."""
    if not re.match(IDENTIFIER, name):
        raise SpecError(f"use case {name!r}: not a valid name (lower-case letters, digits, underscores)")
    path = Path(specs_dir) / f"{name}{SPEC_SUFFIX}"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(Path(specs_dir).glob(f"*{SPEC_SUFFIX}"))) or "none"
        raise SpecError(f"{path}: no spec for use case {name!r}; known use cases: {known}")
    return load_spec(path)
