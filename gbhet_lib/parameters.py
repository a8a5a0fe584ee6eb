"""Check parameter overrides against a chapter's ``parameters`` cell before any kernel starts.

A chapter notebook declares its parameters as plain assignments in the cell tagged ``parameters``
(``n_patients = 8  # comment``). :func:`declared_parameters` reads them (name, literal default, the comments on
and just above the line); :func:`check_overrides` rejects, with one line that names the parameter, the stage and
the fix:

* a name no selected stage declares (the closest declared names are suggested);
* a value whose type does not fit the default's: ``bool`` takes true/false, ``int`` an integer, ``float`` any
  number (an integer is fine), ``str`` a string, ``list`` a list (whose items fit the default's items when they
  all share a type), ``dict`` a mapping; a ``None`` default takes anything, and ``None`` is accepted wherever the
  parameter's comment mentions it (``n_tokens = 7  # ... (None keeps all)``);
* a value outside the chapter's allowed values, declared per parameter in :data:`ALLOWED` (the choices the
  chapters' comments and the library's checks name; for a list parameter, each item).

Imports only the standard library and :mod:`gbhet_lib.errors`.
"""
from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError

_VARIANTS = ("best", "frozen", "chromosome")
_SPLIT_POLICIES = ("patch", "slide", "lineage", "patient")

#: the allowed values of chapter parameters, by name (each item of a list parameter must be one of them);
#: tests/test_parameters.py checks them against the library's own tuples and every chapter's defaults
ALLOWED: dict[str, tuple[Any, ...]] = {
    "reference_expression": ("verhaak840", "cancersubtypes1500"),  # 01
    "token_method": ("ppi", "chromosome"),  # 02
    "reconstruction": ("sum_genes", "mean"),  # 02
    "expression_values": ("counts", "normalised"),  # 02
    "mining": ("hardest", "semihard"),  # 03
    "split_policy": _SPLIT_POLICIES,  # 03
    "split_policies": _SPLIT_POLICIES,  # 04
    "frozen_mode": ("eval", "train"),  # 04-06
    "itm_negatives": ("roll", "similarity"),  # 04
    "fixes_variant": (*_VARIANTS, None),  # 04-05
    "cv_variant": _VARIANTS,  # 04
    "null_variant": _VARIANTS,  # 06
    "protocols": ("patch", "slide", "lineage", "patient_cv"),  # 05
    "baselines": ("random_init", "not_fused", "linear"),  # 05
    "weighting": ("lineage", "patch"),  # 06
    "models": ("he2rna_wsi", "farooq_mri", "ridge_wsi", "ridge_mri"),  # 07
    "traits": ("enhancing", "ncet", "necrosis", "focal", "infiltrative", "edema"),  # 08
    "orientation": ("auto", "genes_x_samples", "samples_x_genes"),  # 02, 08 (your own tables)
    "aggregate_samples": ("mean", "sum", "first"),  # 02, 08
    "survival_time_unit": ("days", "months", "years"),  # 02
    "comparators": ("logit_l1", "logit_l2", "rf", "gb", "svm"),  # 08
    "grid": ("demo", "paper"),  # 08
    "real_data": ("auto", True, False),  # 08
}

_NO_DEFAULT = object()  # a default that is not a Python literal: any value is accepted
_MENTIONS_NONE = re.compile(r"\bNone\b")
_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a mapping"}


@dataclass(frozen=True)
class Parameter:
    """One assignment of a ``parameters`` cell.

    Attributes:
        name: the variable name.
        stage: the notebook's stem, e.g. ``01_data``.
        default: the literal default (``_NO_DEFAULT`` when the right-hand side is not a literal).
        source: the assignment as written, e.g. ``n_patients = 8``.
        comment: the comment on the line and the comment lines just above it.
    """

    name: str
    stage: str
    default: Any
    source: str
    comment: str = ""

    @property
    def nullable(self) -> bool:
        """Whether ``None`` is a valid value: a ``None`` default, a comment that mentions None, or ALLOWED."""
        return (self.default is None or bool(_MENTIONS_NONE.search(self.comment))
                or any(a is None for a in ALLOWED.get(self.name, ())))


class ParameterError(UsageError):
    """A parameter override that no selected stage declares, or whose value does not fit; ``name`` is it."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


def declared_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """The parameters that ``notebook``'s ``parameters`` cell assigns, in order (none without such a cell).

    Raises:
        UsageError: the notebook cannot be read or its ``parameters`` cell is not valid Python.
    """
    import nbformat  # only here: the rest of the module needs the standard library alone

    path = Path(notebook)
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as err:
        raise UsageError(f"notebook {path} cannot be read ({err}); check the --notebooks folder") from err
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    return {} if cell is None else parse_parameters_cell(cell.source, path.stem)


def parse_parameters_cell(source: str, stage: str) -> dict[str, Parameter]:
    """The top-level ``name = literal`` assignments of a ``parameters`` cell's ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise UsageError(f"the parameters cell of {stage} is not valid Python (line {err.lineno}: {err.msg}); "
                         "fix the notebook") from err
    lines = source.splitlines()
    comments = _comments_by_line(source)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            found[name] = Parameter(name, stage, _literal(node.value), ast.get_source_segment(source, node) or name,
                                    _comment_of(node, lines, comments))
    return found


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _NO_DEFAULT


def _comments_by_line(source: str) -> dict[int, str]:
    """Comment text (without ``#``) by 1-based line number."""
    found: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return found


def _comment_of(node: ast.stmt, lines: list[str], comments: dict[int, str]) -> str:
    """The comments on ``node``'s lines and on the comment-only lines right above it."""
    end = node.end_lineno or node.lineno
    own = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
    above = []
    line = node.lineno - 1
    while line >= 1 and lines[line - 1].lstrip().startswith("#"):
        above.insert(0, comments.get(line, ""))
        line -= 1
    return " ".join(above + own).strip()


def check_overrides(overrides: Mapping[str, Any], declared: Mapping[str, Mapping[str, Parameter]]) -> None:
    """Raise :class:`ParameterError` for the first override that no stage in ``declared`` (stage → its
    parameters) declares or whose value does not fit a stage that declares it; see the module docstring."""
    known = sorted(set().union(*(set(p) for p in declared.values()))) if declared else []
    for name, value in overrides.items():
        if name not in known:
            raise ParameterError(name, unknown_message(name, known, list(declared)))
        for parameters in declared.values():
            if name in parameters:
                problem = value_problem(parameters[name], value)
                if problem:
                    raise ParameterError(name, problem)


def unknown_message(name: str, known: list[str], stages: list[str]) -> str:
    """The message for an override ``name`` that none of ``stages`` declares (see :func:`suggest`)."""
    return (f"unknown parameter override(s) {name}: no selected stage ({', '.join(stages)}) declares it; "
            f"{suggest(name, known)}")


def suggest(name: str, known: list[str]) -> str:
    """``did you mean ...?`` with the closest of the ``known`` names, or all of them when none is close."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known) or 'none'}."


def value_problem(parameter: Parameter, value: Any) -> str | None:
    """Why ``value`` does not fit ``parameter`` (one sentence naming it, its stage and the fix), or None."""
    where = f"{parameter.stage} declares {parameter.source}"
    if value is None:
        if parameter.nullable:
            return None
        return f"parameter {parameter.name}=None is not allowed ({where}): give {_kind(parameter.default)}"
    allowed = ALLOWED.get(parameter.name)
    if allowed is not None:
        items = value if isinstance(value, list) and isinstance(parameter.default, list) else [value]
        if isinstance(parameter.default, list) and not isinstance(value, list):
            return f"parameter {parameter.name}={value!r} must be a list ({where}), e.g. {parameter.name}=[{value!r}]"
        bad = [item for item in items if not _one_of(item, allowed)]
        if bad:
            choices = ", ".join(repr(a) for a in allowed)
            return (f"parameter {parameter.name}={value!r}: {bad[0]!r} is not one of {choices} ({where})")
        return None
    return _type_problem(parameter, value, where)


def _type_problem(parameter: Parameter, value: Any, where: str) -> str | None:
    default = parameter.default
    if default is None or default is _NO_DEFAULT or _fits(value, default):
        return None
    got = f"{_kind(value)} ({type(value).__name__})"
    if isinstance(default, list) and isinstance(value, list):
        item = next(i for i in value if not _fits_item(i, default))
        return (f"parameter {parameter.name}={value!r}: the item {item!r} is {_kind(item)}, but the items of "
                f"{parameter.name} are {_kind(default[0])} ({where})")
    return (f"parameter {parameter.name}={value!r} is {got}, but {parameter.name} takes {_kind(default)} ({where})"
            f"{_hint(value, default)}")


def _fits(value: Any, default: Any) -> bool:
    """Whether ``value`` has the type of ``default`` (an int fits a float; lists item by item)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        return isinstance(value, list) and all(_fits_item(item, default) for item in value)
    return isinstance(value, type(default))


def _fits_item(item: Any, default: list[Any]) -> bool:
    """Whether ``item`` fits the items of the list ``default`` (anything when they are empty or mixed)."""
    if not default or len({type(d) for d in default}) > 1:
        return True
    return _fits(item, default[0])


def _one_of(value: Any, allowed: tuple[Any, ...]) -> bool:
    """``value in allowed`` without ``1 == True`` or ``0 == False``."""
    return any(type(value) is type(a) and value == a for a in allowed)


def _kind(value: Any) -> str:
    return next((words for kind, words in _KIND_WORDS.items() if type(value) is kind), type(value).__name__)


def _hint(value: Any, default: Any) -> str:
    """A hint for the commonest slip: a word where a number or a flag was wanted (YAML read it as a string)."""
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        return f"; write the number in digits, e.g. {default!r}"
    if isinstance(value, str) and isinstance(default, bool):
        return "; write true or false"
    return f"; e.g. {default!r}"
