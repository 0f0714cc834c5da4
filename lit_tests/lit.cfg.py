# lit configuration for tpc's FileCheck tests: `lit -v lit_tests`.
# RUN lines call the `tpc` console script (`tpc opt %s -p <passes> | filecheck %s`);
# the venv's bin directory goes first on PATH so that `tpc` and `filecheck` are the
# ones installed next to the interpreter running lit.
import os
import sys
import tempfile

import lit.formats

config.name = "tpc"  # noqa: F821
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir", ".ham"]  # noqa: F821
config.test_source_root = os.path.dirname(__file__)  # noqa: F821
config.excludes = ["lit.cfg.py", "Inputs"]  # noqa: F821

bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join(  # noqa: F821
    [bin_dir, config.environment.get("PATH", os.environ.get("PATH", ""))]  # noqa: F821
)
# Keep tests away from the user's object cache.
config.environment["TPC_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "tpc-lit-cache")  # noqa: F821
config.substitutions.append(("%tpc-opt", "tpc opt"))  # noqa: F821
