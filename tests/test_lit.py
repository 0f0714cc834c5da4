"""Runs the FileCheck suite (lit_tests/) so that one pytest command runs everything."""

import subprocess
import sys
from pathlib import Path

LIT_DIR = Path(__file__).resolve().parent.parent / "lit_tests"


def test_lit_suite():
    cmd = [sys.executable, "-c", "import lit.main; lit.main.main()", "-q", "-j2", str(LIT_DIR)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
