"""Tests of gbhet_lib.plots' colours: the Okabe–Ito palette is the default cycle and the categorical colour of
the shared figures (no matplotlib ``tab10`` left), so the book's figures read under colour-vision deficiencies."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from gbhet_lib import plots  # noqa: E402

OKABE_ITO_HEX = {to_hex(c) for c in plots.OKABE_ITO.values()}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_palette_is_okabe_ito_and_repeats_in_order() -> None:
    assert len(plots.CATEGORICAL) == 8 and {to_hex(c) for c in plots.CATEGORICAL} == OKABE_ITO_HEX
    colours = plots.categorical_colours(10)
    assert colours[:8] == plots.CATEGORICAL and colours[8:] == plots.CATEGORICAL[:2]


def test_import_makes_okabe_ito_the_default_cycle() -> None:
    matplotlib.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=["#1f77b4", "#ff7f0e"])  # tab10's first two
    plots.apply_style()
    cycle = [to_hex(c) for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [to_hex(c) for c in plots.CATEGORICAL]
    line, = plt.subplots()[1].plot([0, 1])  # a figure drawn elsewhere with default colours
    assert to_hex(line.get_color()) == to_hex(plots.OKABE_ITO["blue"])


def test_loss_curves_colour_each_policy_from_the_palette() -> None:
    history = pd.DataFrame({"epoch": [0, 1] * 3, "train_itc": np.linspace(1, 0, 6), "val_itc": np.linspace(2, 1, 6),
                            "policy": ["patch"] * 2 + ["slide"] * 2 + ["patient"] * 2, "variant": "best"})
    fig = plots.loss_curves(history, ["itc"])
    colours = [to_hex(line.get_color()) for line in fig.axes[0].get_lines()]
    assert len(colours) == 6 and set(colours) == {to_hex(c) for c in plots.CATEGORICAL[:3]}


def test_highlighted_communities_in_vermillion_rest_grey() -> None:
    summary = pd.DataFrame({"genes": [30, 20, 10]}, index=["m1", "c2", "c3"])
    ax = plots.community_sizes(summary, highlight=["m1"])
    faces = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert faces == [to_hex(plots.OKABE_ITO["vermillion"]), to_hex(plots.GREY), to_hex(plots.GREY)]


def test_no_tab10_colours_left_in_the_module() -> None:
    source = Path(plots.__file__).read_text(encoding="utf-8")
    assert not re.search(r'"tab:|"tab10"|"C\d"|limegreen|"jet"|"rainbow"', source)
