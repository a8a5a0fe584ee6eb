"""gbhet_lib.parameters: overrides checked against the chapters' parameters cells (no kernel is started here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gbhet_lib.errors import UsageError
from gbhet_lib.parameters import ALLOWED, Parameter, ParameterError, check_overrides, declared_parameters, \
    parse_parameters_cell, value_problem

CHAPTERS = sorted(Path(__file__).resolve().parents[1].joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL = '''# Parameters
n_items = 8  # how many
lr = 1e-3
flag = True
name = "a"  # "a" or "b"
tags = ["x", "y"]
sizes = []
extra = {}
# the next one may be switched off (None: skip)
optional = 3
path = None
computed = 2 * 3
'''


@pytest.fixture(scope="module")
def chapters() -> dict[str, dict[str, Parameter]]:
    return {path.stem: declared_parameters(path) for path in CHAPTERS}


def test_the_cell_is_read_with_literal_defaults_and_comments() -> None:
    found = parse_parameters_cell(CELL, "01_x")
    assert list(found) == ["n_items", "lr", "flag", "name", "tags", "sizes", "extra", "optional", "path", "computed"]
    assert found["n_items"].default == 8 and found["n_items"].comment == "Parameters how many"  # above + on
    assert found["n_items"].source == "n_items = 8" and found["n_items"].stage == "01_x"
    assert found["optional"].comment == "the next one may be switched off (None: skip)"
    assert found["optional"].nullable and found["path"].nullable and not found["n_items"].nullable
    assert value_problem(found["computed"], "anything") is None  # not a literal: not checked


def test_a_syntax_error_in_the_cell_names_the_stage() -> None:
    with pytest.raises(UsageError, match=r"parameters cell of 02_y is not valid Python \(line 1"):
        parse_parameters_cell("n = (", "02_y")


@pytest.mark.parametrize("name, value", [
    ("n_items", 3), ("lr", 1), ("lr", 2.5e-4), ("flag", False), ("name", "b"), ("tags", ["z"]), ("tags", []),
    ("sizes", [1, "a"]), ("extra", {"k": 1}), ("optional", None), ("path", 5), ("path", "x"),
])
def test_values_that_fit(name: str, value: object) -> None:
    assert value_problem(parse_parameters_cell(CELL, "01_x")[name], value) is None


@pytest.mark.parametrize("name, value, message", [
    ("n_items", "four", "parameter n_items='four' is a string (str), but n_items takes an integer (01_x declares "
                        "n_items = 8); write the number in digits, e.g. 8"),
    ("n_items", 2.5, "n_items=2.5 is a number (float), but n_items takes an integer"),
    ("n_items", True, "n_items=True is true or false (bool), but n_items takes an integer"),
    ("lr", "fast", "lr='fast' is a string (str), but lr takes a number (01_x declares lr = 1e-3)"),
    ("flag", "on", "flag='on' is a string (str), but flag takes true or false (01_x declares flag = True); write "
                   "true or false"),
    ("flag", 1, "flag=1 is an integer (int), but flag takes true or false"),
    ("name", 3, "name=3 is an integer (int), but name takes a string"),
    ("tags", "x", "tags='x' is a string (str), but tags takes a list"),
    ("tags", ["x", 2], "parameter tags=['x', 2]: the item 2 is an integer, but the items of tags are a string"),
    ("extra", [1], "extra=[1] is a list (list), but extra takes a mapping"),
    ("n_items", None, "parameter n_items=None is not allowed (01_x declares n_items = 8): give an integer"),
])
def test_values_that_do_not_fit_say_why(name: str, value: object, message: str) -> None:
    problem = value_problem(parse_parameters_cell(CELL, "01_x")[name], value)
    assert problem is not None and message in problem


def test_unknown_names_get_the_closest_suggested_or_the_list() -> None:
    declared = {"01_x": parse_parameters_cell(CELL, "01_x")}
    with pytest.raises(ParameterError, match=r"unknown parameter override\(s\) n_item: no selected stage \(01_x\) "
                                             r"declares it; did you mean n_items\?") as caught:
        check_overrides({"n_item": 3}, declared)
    assert caught.value.name == "n_item" and isinstance(caught.value, ValueError)
    with pytest.raises(ParameterError, match=r"declares it; known: computed, extra, flag, lr, n_items, name, "):
        check_overrides({"zzz": 3}, declared)


def test_every_stage_that_declares_a_name_is_checked() -> None:
    declared = {"01_x": parse_parameters_cell("epochs = 2.0\n", "01_x"),
                "02_y": parse_parameters_cell("epochs = 10\n", "02_y")}
    check_overrides({"epochs": 3}, declared)
    with pytest.raises(ParameterError, match=r"epochs=3.5 is a number \(float\), but epochs takes an integer "
                                             r"\(02_y declares epochs = 10\)"):
        check_overrides({"epochs": 3.5}, declared)


def test_every_chapter_default_passes_its_own_check(chapters: dict[str, dict[str, Parameter]]) -> None:
    assert len(chapters) == 8
    for parameters in chapters.values():
        for parameter in parameters.values():
            assert value_problem(parameter, parameter.default) is None, parameter


def test_every_allowed_table_entry_is_a_chapter_parameter(chapters: dict[str, dict[str, Parameter]]) -> None:
    declared = set().union(*chapters.values())
    assert set(ALLOWED) <= declared, set(ALLOWED) - declared


def test_allowed_values_are_the_library_s_own() -> None:
    from gbhet_lib.data.user_tables import AGGREGATIONS, ORIENTATIONS, TIME_UNITS
    from gbhet_lib.evaluate.splits import SPLIT_POLICIES
    from gbhet_lib.evaluate.stage import BASELINES, PROTOCOLS
    from gbhet_lib.expression_from_images.stage import MODELS
    from gbhet_lib.fusion.train import VARIANT_NAMES
    from gbhet_lib.mri.traits import TRAITS
    from gbhet_lib.radiogenomics.comparators import COMPARATORS
    from gbhet_lib.wsi.stage import SPLIT_POLICIES as WSI_SPLIT_POLICIES

    assert ALLOWED["split_policy"] == ALLOWED["split_policies"] == SPLIT_POLICIES == WSI_SPLIT_POLICIES
    assert ALLOWED["protocols"] == PROTOCOLS and ALLOWED["baselines"] == BASELINES
    assert ALLOWED["models"] == tuple(MODELS) and ALLOWED["traits"] == TRAITS
    assert ALLOWED["orientation"] == ORIENTATIONS and ALLOWED["aggregate_samples"] == AGGREGATIONS
    assert ALLOWED["survival_time_unit"] == tuple(TIME_UNITS)
    assert ALLOWED["comparators"] == COMPARATORS
    assert ALLOWED["cv_variant"] == ALLOWED["null_variant"] == VARIANT_NAMES
    assert ALLOWED["fixes_variant"] == (*VARIANT_NAMES, None)


@pytest.mark.parametrize("stage, overrides, message", [
    ("03_wsi_encoding", {"split_policy": "random"},
     "parameter split_policy='random': 'random' is not one of 'patch', 'slide', 'lineage', 'patient' "
     "(03_wsi_encoding declares split_policy = \"slide\")"),
    ("04_fusion_training", {"split_policies": ["patch", "random"]}, "'random' is not one of 'patch', 'slide'"),
    ("04_fusion_training", {"split_policies": "patch"},
     "split_policies='patch' must be a list (04_fusion_training declares split_policies = "),
    ("08_radiogenomic_traits", {"real_data": 1}, "real_data=1: 1 is not one of 'auto', True, False"),
    ("02_rna_encoding", {"token_method": "louvain"}, "'louvain' is not one of 'ppi', 'chromosome'"),
    ("02_rna_encoding", {"n_tokens": "all"}, "n_tokens='all' is a string (str), but n_tokens takes an integer"),
])
def test_chapter_values_outside_the_allowed_ones(chapters: dict[str, dict[str, Parameter]], stage: str,
                                                 overrides: dict, message: str) -> None:
    with pytest.raises(ParameterError) as caught:
        check_overrides(overrides, {stage: chapters[stage]})
    assert message in str(caught.value)


@pytest.mark.parametrize("stage, overrides", [
    ("08_radiogenomic_traits", {"real_data": True}), ("04_fusion_training", {"fixes_variant": None}),
    ("02_rna_encoding", {"n_tokens": None}), ("04_fusion_training", {"patches_per_slide": None}),
    ("04_fusion_training", {"split_policies": ["patient"]}), ("03_wsi_encoding", {"lr": 1}),
])
def test_chapter_values_that_are_allowed(chapters: dict[str, dict[str, Parameter]], stage: str,
                                         overrides: dict) -> None:
    check_overrides(overrides, {stage: chapters[stage]})
