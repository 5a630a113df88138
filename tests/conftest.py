"""Shared setup of the test suite: the reference implementations kept beside the tests.

pytest runs in importlib mode (pyproject.toml), which puts no test folder on ``sys.path``, so
the plain reference models in this folder are registered here — before any test module is
imported — under the module names their docstrings give, and test modules import them by
those names:

* ``bitmod_tests_pe_reference``: ``tests/pe_reference.py``, the scalar reference PE
  (``import bitmod_tests_pe_reference as ref``);
* ``bitmod_tests_reference_quant``: ``tests/reference_quant.py``, the slow reference
  quantizers.

``bench/emulate.py`` uses :func:`load_reference` too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent
REFERENCES = {
    "bitmod_tests_pe_reference": TESTS / "pe_reference.py",
    "bitmod_tests_reference_quant": TESTS / "reference_quant.py",
}


def load_reference(name: str) -> ModuleType:
    """The reference module ``name`` of :data:`REFERENCES`, imported once per process."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REFERENCES[name])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


for _name in REFERENCES:
    load_reference(_name)
