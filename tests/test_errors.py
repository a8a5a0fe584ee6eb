"""One error tree: every exception class gbhet_lib defines derives from GbhetError and keeps its builtin base."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import gbhet_lib
from gbhet_lib.errors import GbhetError

def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a gbhet_lib module, by dotted name (imports every module)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(gbhet_lib.__path__, "gbhet_lib."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = obj
    return found


@pytest.fixture(scope="module")
def exception_classes() -> dict[str, type[BaseException]]:
    return _exception_classes()


def test_every_gbhet_exception_is_a_gbhet_error(exception_classes: dict[str, type[BaseException]]) -> None:
    outside = sorted(name for name, cls in exception_classes.items()
                     if not issubclass(cls, GbhetError))
    assert outside == [], (f"{outside}: derive them from gbhet_lib.errors.GbhetError, keeping the builtin base "
                           "(class XError(GbhetError, ValueError))")


def test_the_tree_is_found_and_keeps_the_builtin_bases(exception_classes: dict[str, type[BaseException]]) -> None:
    from gbhet_lib.data.archives import UnsafeArchiveError
    from gbhet_lib.data.fetch import ChecksumMismatchError
    from gbhet_lib.data.gdc import GDCNotFoundError
    from gbhet_lib.data.zenodo import ZenodoError
    from gbhet_lib.fusion.stage import MissingInputs

    assert len(exception_classes) >= 30, "the module walk found too few classes: is gbhet_lib importable?"
    assert issubclass(ChecksumMismatchError, ValueError) and issubclass(UnsafeArchiveError, ValueError)
    assert issubclass(GDCNotFoundError, RuntimeError) and issubclass(ZenodoError, RuntimeError)
    assert issubclass(MissingInputs, FileNotFoundError)
    with pytest.raises(GbhetError):  # a caller catches the library's errors at one place
        raise MissingInputs("x")
