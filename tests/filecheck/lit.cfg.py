"""lit configuration for the FileCheck tests of the bitmod passes and bitmod-opt.

Run with ``lit tests/filecheck -v`` (``tests/test_filecheck.py`` does that under pytest).
``bitmod-opt`` and ``filecheck`` are taken from the directory of the Python running lit
(the virtual environment) first, then from PATH.
"""

import os
import sys

import lit.formats

config.name = "bitmod"  # noqa: F821 (lit defines `config`)
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir"]  # noqa: F821
config.excludes = ["Inputs", "Output", "lit.cfg.py"]  # noqa: F821
config.test_source_root = os.path.dirname(os.path.abspath(__file__))  # noqa: F821
config.test_exec_root = os.path.join(config.test_source_root, "Output")  # noqa: F821

_repo_root = os.path.dirname(os.path.dirname(config.test_source_root))  # noqa: F821
_tool_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join(  # noqa: F821
    [_tool_dir, os.environ.get("PATH", "")]
)
for _name in ("HOME", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"):
    if _name in os.environ:
        config.environment[_name] = os.environ[_name]  # noqa: F821
config.substitutions.append(("%examples", os.path.join(_repo_root, "examples")))  # noqa: F821
config.substitutions.append(("%python", sys.executable))  # noqa: F821
