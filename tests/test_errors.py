"""Bad inputs: each one must give `file:line:col: error: message`, the line, a caret, exit 1."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tpc import pipeline
from tpc.diagnostics import TpcError
from tpc.simulate import load_run_config

HAS_RUNNER = importlib.util.find_spec("tpc.runner") is not None

# (id, source, line, col, message). The first line of stderr must be exactly
# "<file>:<line>:<col>: error: <message>".
COMPILE_ERRORS = [
    (
        "missing-operand-eol",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 +\n}\n",
        4, 1, "unexpected '}' (expected '(', '-', a name, a number)",
    ),
    (
        "missing-operand-mid",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 * * q[0]\n}\n",
        3, 16, "unexpected '*' (expected '(', '-', a name, a number)",
    ),
    (
        "stray-character",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 $ q[0]\n}\n",
        3, 14, "unexpected character '$'",
    ),
    (
        "unclosed-paren",
        "system S {\n  state q[1], p[1]\n  H = (p[0]^2 + q[0]^2\n}\n",
        4, 1, "unexpected '}' (expected ')')",
    ),
    (
        "unclosed-brace",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 + q[0]^2\n",
        3, 22, "unexpected end of file",
    ),
    (
        "bad-simulate-list",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2\n}\nsimulate {\n  q = [1,]\n}\n",
        6, 10, "unexpected ']' (expected '-', '[', a name, a number, a string)",
    ),
    (
        "unknown-name",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 + k * q[0]^2\n}\n",
        3, 16, "unknown name 'k'",
    ),
    (
        "unknown-function",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 + sinn(q[0])\n}\n",
        3, 16,
        "unknown function 'sinn' (known: abs, cos, cosh, cross, dot, erf, erfc, exp, log, norm, "
        "sin, sinh, sqrt, sum, tan, tanh)",
    ),
    (
        "arity-dot",
        "system S {\n  state q[3], p[3]\n  H = dot(p) + q[0]\n}\n",
        3, 7, "'dot' takes 2 arguments, got 1",
    ),
    (
        "arity-sin",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 + sin(q[0], q[0])\n}\n",
        3, 16, "'sin' takes 1 argument, got 2",
    ),
    (
        "arity-none",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2 + sin()\n}\n",
        3, 16, "'sin' takes 1 argument, got 0",
    ),
    (
        "elementwise-shapes",
        "system S {\n  input a[2]\n  state q[3], p[3]\n  H = sum(p * a) + sum(q)\n}\n",
        4, 11, "shape mismatch in '*': shape [3] and shape [2]",
    ),
    (
        "dot-lengths",
        "system S {\n  input a[2]\n  state q[3], p[3]\n  H = dot(p, a)\n}\n",
        4, 7, "shape mismatch in dot: shape [3] and shape [2]",
    ),
    (
        "cross-of-2-vectors",
        "system S {\n  state q[2], p[2]\n  H = sum(cross(p, q))\n}\n",
        3, 11, "'cross' needs 3-vectors, got shape [2]",
    ),
    (
        "norm-of-scalar",
        "system S {\n  state q[N], p[N]\n  H = sum(p) + norm(p[0])\n}\n",
        3, 16, "'norm' needs vectors with a fixed-length last dimension, got a scalar",
    ),
    (
        "array-exponent",
        "system S {\n  state q[3], p[3]\n  H = sum(p ^ q)\n}\n",
        3, 11, "exponent must be a scalar, got shape [3]",
    ),
    (
        "q-p-shapes-differ",
        "system S {\n  state q[3], p[2]\n  H = sum(p)\n}\n",
        2, 15, "'p' must have the shape of 'q' (shape [3]), got shape [2]",
    ),
    (
        "H-not-scalar",
        "system S {\n  state q[3], p[3]\n  H = p * p\n}\n",
        3, 7, "H must be a scalar, but it has shape [3]",
    ),
    (
        "H-not-scalar-vector-sum",
        "system S {\n  state q[N, 3], p[N, 3]\n  H = sum(i: q[i])\n}\n",
        3, 7, "H must be a scalar, but it has shape [3]",
    ),
    (
        "two-H",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2\n  H = q[0]^2\n}\n",
        4, 3, "H is defined twice (first at {file}:3:3)",
    ),
    (
        "no-H",
        "system S {\n  state q[1], p[1]\n}\n",
        1, 8, "system 'S' defines no 'H = ...'",
    ),
    (
        "no-state",
        "system S {\n  param k = 1\n  H = k\n}\n",
        1, 8, "system 'S' has no 'state q[...], p[...]' declaration",
    ),
    (
        "two-states",
        "system S {\n  state q[1], p[1]\n  state a[1], b[1]\n  H = p[0]^2\n}\n",
        3, 3, "a system has exactly one state declaration",
    ),
    (
        "let-cycle",
        "system S {\n  state q[1], p[1]\n  let a = b + q[0]\n  let b = a * 2\n"
        "  H = a + p[0]^2\n}\n",
        3, 7, "'let' definitions form a cycle: a -> b -> a",
    ),
    (
        "let-self-cycle",
        "system S {\n  state q[1], p[1]\n  let a = a + q[0]\n  H = a + p[0]^2\n}\n",
        3, 7, "'let' definitions form a cycle: a -> a",
    ),
    (
        "error-in-unused-let",
        "system S {\n  state q[1], p[1]\n  let z = foo\n  H = p[0]^2\n}\n",
        3, 11, "unknown name 'foo'",
    ),
    (
        "index-out-of-range",
        "system S {\n  state q[3], p[3]\n  H = dot(p, p) + q[3]\n}\n",
        3, 21, "index 3 out of range for 'q' (dimension of size 3)",
    ),
    (
        "index-N-out-of-range",
        "system S {\n  state q[N], p[N]\n  H = sum(p) + q[N]\n}\n",
        3, 18, "index N out of range for 'q' (dimension of size N; the last index is N-1)",
    ),
    (
        "index-computed-vector-out-of-range",
        "system S {\n  state q[N, 3], p[N, 3]\n  let v = p * 2\n  H = sum(i: v[i, 5])\n}\n",
        4, 19, "index 5 out of range for 'v' (dimension of size 3)",
    ),
    (
        "negative-index",
        "system S {\n  state q[3], p[3]\n  H = dot(p, p) + q[-1]\n}\n",
        3, 21, "negative index into 'q'",
    ),
    (
        "too-many-indices",
        "system S {\n  state q[3], p[3]\n  H = dot(p, p) + q[0, 1]\n}\n",
        3, 19, "too many indices for 'q' (shape [3]): 2 given",
    ),
    (
        "indexing-a-scalar",
        "system S {\n  param k = 1\n  state q[1], p[1]\n  H = p[0]^2 + k[0]\n}\n",
        4, 16, "too many indices for 'k' (a scalar): 1 given",
    ),
    (
        "non-integer-index",
        "system S {\n  state q[3], p[3]\n  H = dot(p, p) + q[1.5]\n}\n",
        3, 21, "index into 'q' must be an integer, got 1.5",
    ),
    (
        "non-affine-index",
        "system S {\n  state q[N], p[N]\n  H = sum(i: p[i] * q[2*i])\n}\n",
        3, 23,
        "index into 'q' must be an integer, a summation index, or one of them +/- an integer",
    ),
    (
        "param-as-index",
        "system S {\n  param k = 1\n  state q[3], p[3]\n  H = dot(p, p) + q[k]\n}\n",
        4, 21, "'k' is not an index (a param)",
    ),
    (
        "negative-dimension",
        "system S {\n  state q[-1], p[-1]\n  H = sum(p)\n}\n",
        2, 11, "unexpected '-' (expected a name, an integer)",
    ),
    (
        "zero-dimension",
        "system S {\n  state q[0], p[0]\n  H = sum(p)\n}\n",
        2, 11, "dimension of 'q' must be positive, got 0",
    ),
    (
        "input-as-size",
        "system S {\n  input N[3]\n  state q[N], p[N]\n  H = sum(p)\n}\n",
        3, 11, "'N' is an input, not a size",
    ),
    (
        "redefinition",
        "system S {\n  param k = 1\n  state q[1], p[1]\n  let k = q[0]\n  H = p[0]^2 + k\n}\n",
        4, 7, "redefinition of 'k' (first declared as a param at {file}:2:9)",
    ),
    (
        "redefinition-in-param-list",
        "system S {\n  param k = 1, k = 2\n  state q[1], p[1]\n  H = p[0]^2\n}\n",
        2, 16, "redefinition of 'k' (first declared as a param at {file}:2:9)",
    ),
    (
        "summation-index-as-value",
        "system S {\n  state q[N], p[N]\n  H = sum(i: p[i]^2 * i)\n}\n",
        3, 23, "summation index 'i' can only be used inside [ ]",
    ),
    (
        "size-as-value",
        "system S {\n  state q[N], p[N]\n  H = sum(p) * N\n}\n",
        3, 16, "size 'N' can only be used in shapes, ranges and indices",
    ),
    (
        "range-not-inferable",
        "system S {\n  state q[N], p[N]\n  H = sum(p) + sum(i: 1)\n}\n",
        3, 16,
        "cannot infer the range of 'i': it indexes no array (write sum(i in 0..N: ...))",
    ),
    (
        "index-over-different-dims",
        "system S {\n  input a[M]\n  state q[N], p[N]\n  H = sum(i: p[i] * a[i])\n}\n",
        4, 7, "'i' indexes dimensions of different sizes (M, N)",
    ),
    (
        "pair-sum-same-index",
        "system S {\n  state q[N], p[N]\n  H = sum(p) + sum(i < i: q[i])\n}\n",
        3, 16, "a pair sum needs two different indices",
    ),
    (
        "pair-sum-offset",
        "system S {\n  state q[N], p[N]\n  H = sum(p) + sum(i < j: q[i+1] * q[j])\n}\n",
        3, 16, "pair-sum indices cannot carry offsets",
    ),
    (
        "summation-index-reused",
        "system S {\n  state q[N], p[N]\n  H = sum(i: sum(i: p[i]) * p[i])\n}\n",
        3, 14, "summation index 'i' is already in use",
    ),
    (
        "summation-index-shadows",
        "system S {\n  param k = 1\n  state q[N], p[N]\n  H = sum(k: p[k]^2)\n}\n",
        4, 7, "summation index 'k' shadows the param 'k'",
    ),
    (
        "box-needs-particles",
        "system S {\n  box L = -1\n  state q[1], p[1]\n  H = p[0]^2\n}\n",
        2, 3, "a periodic box needs positions of shape [N, D] with a fixed number of axes D "
        "(got 'q' of shape [1])",
    ),
    (
        "duplicate-simulate-key",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2\n}\nsimulate {\n  integrator = leapfrog\n"
        "  integrator = midpoint\n}\n",
        7, 3, "'integrator' is set twice (first at {file}:6:3)",
    ),
    (
        "unknown-integrator",
        "system S {\n  state q[1], p[1]\n  H = p[0]^2\n}\nsimulate {\n  integrator = euler\n}\n",
        6, 16,
        "unknown integrator 'euler' (known: leapfrog, yoshida4, yoshida6, yoshida8, midpoint, "
        "exact, compose, respa, boris, triple_jump6, triple_jump8, discrete_gradient)",
    ),
]


def run_tpc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tpc.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=120,
    )


def expand(msg: str, path: Path) -> str:
    return msg.replace("{file}", str(path))


def assert_located(stderr: str, path: Path, source: str, line: int, col: int, msg: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == f"{path}:{line}:{col}: error: {expand(msg, path)}"
    src_line = source.splitlines()[line - 1]
    assert lines[1] == src_line
    assert lines[2] == " " * (col - 1) + "^"


@pytest.mark.parametrize(
    "source,line,col,msg", [c[1:] for c in COMPILE_ERRORS], ids=[c[0] for c in COMPILE_ERRORS]
)
def test_compile_error(tmp_path: Path, source: str, line: int, col: int, msg: str) -> None:
    path = tmp_path / "bad.ham"
    path.write_text(source)
    r = run_tpc("compile", str(path), "--emit=ham")
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    assert_located(r.stderr, path, source, line, col, msg)


def test_error_ids_are_distinct() -> None:
    assert len({c[0] for c in COMPILE_ERRORS}) == len(COMPILE_ERRORS)
    assert len({c[1] for c in COMPILE_ERRORS}) == len(COMPILE_ERRORS)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.ham"
    path.write_text("")
    r = run_tpc("compile", str(path), "--emit=ham")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert_located(r.stderr, path, "\n", 1, 1,
                   "the file is empty (expected 'system NAME { ... }')")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ham"
    r = run_tpc("compile", str(path), "--emit=ham")
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: cannot read '{path}': No such file or directory"


# ------------------------------------------------------------------- the simulate block

BASE = "# a small test system\nsystem S {{\n  state q[{shape}], p[{shape}]\n{extra}  H = sum(p * p) + sum(q * q)\n}}\n"
NBODY_LIKE = "# particles with masses\nsystem S {\n  input m[N]\n  state q[N, 3], p[N, 3]\n  H = sum(i: dot(p[i], p[i]) / m[i])\n}\n"


def sim(body: str, system: str | None = None) -> str:
    system = system if system is not None else BASE.format(shape="2", extra="")
    return system + "simulate {\n" + body + "}\n"


# (id, source, line, col, message, extra files {name: text|bytes})
SIMULATE_ERRORS = [
    (
        "dt-zero",
        sim("  dt = 0\n  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n"),
        7, 8, "dt must be a finite number > 0, got 0", {},
    ),
    (
        "dt-negative",
        sim("  dt = -0.5\n  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n"),
        7, 8, "dt must be a finite number > 0, got -0.5", {},
    ),
    (
        "dt-not-a-number",
        sim('  dt = "small"\n  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n'),
        7, 8, 'dt must be a number, got "small"', {},
    ),
    (
        "dt-nan",
        sim("  dt = nan\n  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n"),
        7, 8, "dt must be a finite number > 0, got nan", {},
    ),
    (
        "dt-missing",
        sim("  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n"),
        2, 8,
        "system 'S' has no time step: add 'dt = ...' to the simulate block or pass --dt", {},
    ),
    (
        "steps-negative",
        sim("  dt = 0.1\n  steps = -1\n  q = [1, 0]\n  p = [0, 1]\n"),
        8, 11, "steps must be between 0 and 1,000,000,000,000,000, got -1", {},
    ),
    (
        "steps-fraction",
        sim("  dt = 0.1\n  steps = 2.5\n  q = [1, 0]\n  p = [0, 1]\n"),
        8, 11, "steps must be an integer, got 2.5", {},
    ),
    (
        "steps-too-many",
        sim("  dt = 0.1\n  steps = 1e30\n  q = [1, 0]\n  p = [0, 1]\n"),
        8, 11, "steps must be between 0 and 1,000,000,000,000,000, got 1e+30", {},
    ),
    (
        "save-every-zero",
        sim("  dt = 0.1\n  steps = 10\n  save_every = 0\n  q = [1, 0]\n  p = [0, 1]\n"),
        9, 16, "save_every must be between 1 and 1,000,000,000,000,000, got 0", {},
    ),
    (
        "unknown-key",
        sim("  dt = 0.1\n  steps = 10\n  tmax = 5\n  q = [1, 0]\n  p = [0, 1]\n"),
        9, 3,
        "unknown simulate setting 'tmax' (known: integrator, dt, steps, save_every, init, precision, kahan, units, project, q, p)",
        {},
    ),
    (
        "nan-initial-value",
        sim("  dt = 0.1\n  steps = 10\n  q = [1, nan]\n  p = [0, 1]\n"),
        9, 7, "initial value of 'q' is not finite at index 1", {},
    ),
    (
        "inf-initial-value-2d",
        sim("  dt = 0.1\n  steps = 10\n  q = [[1, 2, 3]]\n  p = [[0, inf, 0]]\n",
            NBODY_LIKE.replace("  input m[N]\n", "").replace(" / m[i]", "")),
        10, 7, "initial value of 'p' is not finite at index (0, 1)", {},
    ),
    (
        "wrong-length",
        sim("  dt = 0.1\n  steps = 10\n  q = [1, 0, 0]\n  p = [0, 1]\n"),
        9, 7, "'q' needs shape [2], got [3]", {},
    ),
    (
        "wrong-rank",
        sim("  dt = 0.1\n  steps = 10\n  q = [[1, 0]]\n  p = [0, 1]\n"),
        9, 7, "'q' needs shape [2], got [1, 2]", {},
    ),
    (
        "ragged",
        sim("  dt = 0.1\n  steps = 10\n  q = [[1, 2, 3], [4]]\n  p = [[0, 0, 0], [0, 0, 0]]\n"
            "  m = [1, 1]\n", NBODY_LIKE),
        10, 7, "initial value of 'q' is not a rectangular array of numbers", {},
    ),
    (
        "text-in-values",
        sim('  dt = 0.1\n  steps = 10\n  q = [1, "a"]\n  p = [0, 1]\n'),
        9, 7, 'initial value of \'q\' must be numbers, got [1, "a"]', {},
    ),
    (
        "missing-p",
        sim("  dt = 0.1\n  steps = 10\n  q = [1, 0]\n"),
        2, 8,
        "no initial value for state array 'p': give 'p = [...]' in the simulate block or an "
        "init file", {},
    ),
    (
        "missing-input",
        sim("  dt = 0.1\n  steps = 10\n  q = [[1, 2, 3]]\n  p = [[0, 0, 0]]\n", NBODY_LIKE),
        2, 8,
        "no initial value for input 'm': give 'm = [...]' in the simulate block or an init file",
        {},
    ),
    (
        "size-mismatch-inline",
        sim("  dt = 0.1\n  steps = 10\n  q = [[1, 2, 3], [4, 5, 6]]\n"
            "  p = [[0, 0, 0], [0, 0, 0]]\n  m = [1, 2, 3]\n", NBODY_LIKE),
        12, 7, "N is 2 from 'q' but 'm' has 3", {},
    ),
    (
        "size-mismatch-init",
        sim('  dt = 0.1\n  steps = 10\n  init = "state.json"\n', NBODY_LIKE),
        10, 10, "N is 16 from 'q' but 'm' has 15",
        {"state.json": json.dumps(
            {"q": [[0.0] * 3] * 16, "p": [[0.0] * 3] * 16, "m": [1.0] * 15})},
    ),
    (
        "init-unreadable",
        sim('  dt = 0.1\n  steps = 10\n  init = "nowhere.json"\n'),
        9, 10, "cannot read init file 'nowhere.json': No such file or directory", {},
    ),
    (
        "init-bad-npz",
        sim('  dt = 0.1\n  steps = 10\n  init = "state.npz"\n'),
        9, 10, "cannot read init file 'state.npz': not an .npz (zip) archive",
        {"state.npz": b"this is not a zip archive"},
    ),
    (
        "init-wrong-suffix",
        sim('  dt = 0.1\n  steps = 10\n  init = "state.txt"\n'),
        9, 10, "init file 'state.txt' must be a .json or .npz file", {"state.txt": "1 2"},
    ),
    (
        "init-not-a-string",
        sim("  dt = 0.1\n  steps = 10\n  init = state\n"),
        9, 10, 'init must be a file name in quotes (init = "state.json"), got state', {},
    ),
    (
        "init-unknown-array",
        sim('  dt = 0.1\n  steps = 10\n  init = "state.json"\n'),
        9, 10,
        "init file 'state.json' has an array 'x' that the system does not declare "
        "(expected q, p)",
        {"state.json": json.dumps({"q": [1, 0], "p": [0, 1], "x": [1]})},
    ),
    (
        "init-and-inline",
        sim('  dt = 0.1\n  steps = 10\n  q = [1, 0]\n  init = "state.json"\n'),
        10, 10, "'q' is given both inline (at {file}:9:7) and in init file 'state.json'",
        {"state.json": json.dumps({"q": [1, 0], "p": [0, 1]})},
    ),
    (
        "init-shape",
        sim('  dt = 0.1\n  steps = 10\n  init = "state.json"\n'),
        9, 10, "'p' needs shape [2], got [3]",
        {"state.json": json.dumps({"q": [1, 0], "p": [0, 1, 2]})},
    ),
]


def write_case(tmp_path: Path, source: str, files: dict) -> Path:
    path = tmp_path / "bad.ham"
    path.write_text(source)
    for name, text in files.items():
        if isinstance(text, bytes):
            (tmp_path / name).write_bytes(text)
        else:
            (tmp_path / name).write_text(text)
    return path


def config_error(path: Path, **kw) -> TpcError:
    program, module = pipeline.frontend(str(path))
    with pytest.raises(TpcError) as info:
        load_run_config(program, module.ops.first, **kw)
    return info.value


@pytest.mark.parametrize(
    "source,line,col,msg,files",
    [c[1:] for c in SIMULATE_ERRORS],
    ids=[c[0] for c in SIMULATE_ERRORS],
)
def test_simulate_error_api(tmp_path, source, line, col, msg, files) -> None:
    path = write_case(tmp_path, source, files)
    err = config_error(path)
    assert err.loc is not None
    assert (err.loc.line, err.loc.col) == (line, col)
    assert err.message == expand(msg, path)
    rendered = err.render().splitlines()
    assert rendered[0] == f"{path}:{line}:{col}: error: {expand(msg, path)}"
    assert rendered[1] == source.splitlines()[line - 1]
    assert rendered[2] == " " * (col - 1) + "^"


@pytest.mark.skipif(not HAS_RUNNER, reason="tpc run (tpc/runner.py) is not built yet")
@pytest.mark.parametrize(
    "source,line,col,msg,files",
    [c[1:] for c in SIMULATE_ERRORS],
    ids=[c[0] for c in SIMULATE_ERRORS],
)
def test_simulate_error_cli(tmp_path, source, line, col, msg, files) -> None:
    path = write_case(tmp_path, source, files)
    r = run_tpc("run", str(path), "-o", str(tmp_path / "out.npz"), "--quiet")
    assert r.returncode == 1, r.stderr
    assert_located(r.stderr, path, source, line, col, msg)


GOOD = sim("  dt = 0.1\n  steps = 10\n  q = [1, 0]\n  p = [0, 1]\n",
           "system S {\n  param k = 1\n  state q[2], p[2]\n  H = sum(p * p) + k * sum(q * q)\n}\n")

# command-line values: no source location, so the error renders as "error: msg"
CLI_ERRORS = [
    ("dt", {"dt": -1.0}, ["--dt", "-1"], "--dt must be > 0, got -1"),
    ("dt-zero", {"dt": 0.0}, ["--dt", "0"], "--dt must be > 0, got 0"),
    ("steps", {"steps": -1}, ["--steps", "-1"],
     "--steps must be between 0 and 1,000,000,000,000,000, got -1"),
    ("steps-huge", {"steps": 10**30}, ["--steps", str(10**30)],
     "--steps must be between 0 and 1,000,000,000,000,000, got " + str(10**30)),
    ("save-every", {"save_every": 0}, ["--save-every", "0"],
     "--save-every must be between 1 and 1,000,000,000,000,000, got 0"),
    ("set-unknown", {"sets": ["g=2"]}, ["--set", "g=2"],
     "--set g=2: the system has no param 'g' (params: k)"),
    ("set-not-number", {"sets": ["k=abc"]}, ["--set", "k=abc"],
     "--set k=abc: 'abc' is not a number"),
    ("set-no-equals", {"sets": ["k"]}, ["--set", "k"], "--set expects NAME=VALUE, got 'k'"),
    ("set-not-finite", {"sets": ["k=inf"]}, ["--set", "k=inf"],
     "--set k=inf: the value must be finite"),
    ("init-missing", {"init": "nowhere.json"}, ["--init", "nowhere.json"],
     "cannot read init file 'nowhere.json': No such file or directory"),
]


@pytest.mark.parametrize("kw,argv,msg", [c[1:] for c in CLI_ERRORS], ids=[c[0] for c in CLI_ERRORS])
def test_command_line_error_api(tmp_path, monkeypatch, kw, argv, msg) -> None:
    path = write_case(tmp_path, GOOD, {})
    monkeypatch.chdir(tmp_path)
    err = config_error(path, **kw)
    assert err.loc is None
    assert err.message == msg
    assert err.render() == f"error: {msg}"


@pytest.mark.skipif(not HAS_RUNNER, reason="tpc run (tpc/runner.py) is not built yet")
@pytest.mark.parametrize("kw,argv,msg", [c[1:] for c in CLI_ERRORS], ids=[c[0] for c in CLI_ERRORS])
def test_command_line_error_cli(tmp_path, kw, argv, msg) -> None:
    path = write_case(tmp_path, GOOD, {})
    r = run_tpc("run", str(path), "-o", str(tmp_path / "out.npz"), "--quiet", *argv, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {msg}"


def test_nan_in_npz_init(tmp_path: Path) -> None:
    q = np.array([1.0, 0.0])
    p = np.array([0.0, np.nan])
    path = write_case(tmp_path, sim('  dt = 0.1\n  steps = 1\n  init = "s.npz"\n'), {})
    np.savez(tmp_path / "s.npz", q=q, p=p)
    err = config_error(path)
    assert err.message == "initial value of 'p' is not finite at index 1"
    assert (err.loc.line, err.loc.col) == (9, 10)


def test_compile_refuses_explicit_splitting_of_non_separable_h(tmp_path):
    source = (
        "system S { state q[1], p[1]\n"
        " H = p[0]^2/2 + q[0]^2/2 + q[0]*p[0] }\n"
        "simulate { integrator = leapfrog dt = 0.1 steps = 10 q = [1.0] p = [0.0] }\n"
    )
    path = tmp_path / "ns.ham"
    path.write_text(source)
    r = subprocess.run([sys.executable, "-m", "tpc.cli", "compile", str(path), "--emit=sym"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first, line, caret = r.stderr.splitlines()[:3]
    assert first.startswith(f"{path}:3:25: error: integrator 'leapfrog' splits H")
    assert "not separable" in first and "integrator = midpoint" in first
    assert line == source.splitlines()[2] and caret == " " * 24 + "^"
