"""Run every module's doctests (they check identities, not printouts)."""
import doctest
import importlib
import pkgutil

import pytest

import warptheory

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(warptheory.__path__, prefix="warptheory.")
    if not name.startswith("warptheory.engines.cuda.launch")  # imports cupy lazily; its docs need a GPU
)


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"
