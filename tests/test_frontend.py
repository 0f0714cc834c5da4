"""The front end on every example: parse, IR generation, the IR text round trip, `tpc opt`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tpc.dialects import ham
from xdsl.dialects import arith

from tpc import irgen, pipeline, syntax
from tpc.syntax import Index, Name, Program, Reduction, Word

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))


def run_tpc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tpc.cli", *args], capture_output=True, text=True, input=stdin,
        timeout=120,
    )


def system_of(module) -> ham.SystemOp:
    return next(op for op in module.walk() if isinstance(op, ham.SystemOp))


def test_there_are_examples() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"harmonic_chain", "kepler", "nbody", "pendulum", "henon_heiles"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_parses_and_generates(path: Path) -> None:
    program = syntax.parse_file(path)
    assert isinstance(program, Program)
    assert program.system.states and program.system.hamiltonians
    module = irgen.generate(program)
    module.verify()
    system = system_of(module)
    assert system.sym_name.data == program.system.name
    st = program.system.states[0]
    assert system.state.names == (st.q.name, st.p.name)
    assert system.state.shape.shape == tuple(st.q.shape)
    assert [p.sym_name.data for p in system.decls(ham.ParamOp)] == [
        p.name for p in program.system.params
    ]
    assert [i.sym_name.data for i in system.decls(ham.InputOp)] == [
        i.name for i in program.system.inputs
    ]
    # H is the sum of its parts; each part's region ends in a scalar yield
    assert system.hamiltonian.part_names == [p.part_name for p in system.parts]
    for part in system.parts:
        y = part.body.block.last_op
        assert isinstance(y, ham.YieldOp) and len(y.values) == 1
        assert str(y.values[0].type) == "f64"


@pytest.mark.parametrize("debuginfo", [False, True], ids=["plain", "debuginfo"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_ir_round_trip(tmp_path: Path, path: Path, debuginfo: bool) -> None:
    flag = ["--debuginfo"] if debuginfo else []
    first = tmp_path / "first.mlir"
    r = run_tpc("compile", str(path), "--emit=ham", "-o", str(first), *flag)
    assert r.returncode == 0, r.stderr
    text = first.read_text()
    assert "ham.system @" in text and "ham.hamiltonian" in text
    if debuginfo:
        assert f'loc("{path}":' in text
    else:
        assert "loc(" not in text
    r2 = run_tpc("opt", str(first), *flag)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == text
    # and from stdin
    r3 = run_tpc("opt", "-", *flag, stdin=text)
    assert r3.returncode == 0, r3.stderr
    assert r3.stdout == text


def test_emit_ham_to_stdout_has_degree_facts() -> None:
    r = run_tpc("compile", str(ROOT / "examples" / "kepler.ham"), "--emit=ham", "-o", "-")
    assert r.returncode == 0, r.stderr
    assert 'degree = "nonpoly"' in r.stdout
    assert "separable = true" in r.stdout


def test_passes_lists_ham_degree() -> None:
    r = run_tpc("passes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    entry = [ln for ln in lines if ln.split()[0] == "ham-degree"]
    assert entry and "degree" in entry[0].split(None, 1)[1]


@pytest.mark.parametrize(
    "text,line,col,msg",
    [
        ("builtin.module {\n  %0 = arith.constant : f64\n}\n", 2, 23, "attribute expected"),
        (
            "builtin.module {\n  ham.system @S {\n    ham.param @k = \n  }\n}\n", 4, 3,
            None,
        ),
        ("builtin.module {\n  ham.system @S {\n    ham.bogus\n  }\n}\n", None, None,
         "Operation ham.bogus is not registered"),
        ("builtin.module {\n  %0 = arith.addf %1, %1 : f64\n}\n", None, None,
         "values used but not defined: [%1]"),
        ("builtin.module {\n", None, None, None),
    ],
    ids=["missing-attribute", "missing-param-value", "unregistered-op", "undefined-value",
         "unclosed-module"],
)
def test_opt_malformed_ir(tmp_path: Path, text: str, line, col, msg) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(text)
    r = run_tpc("opt", str(path))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    prefix = f"{path}:"
    assert first.startswith(prefix)
    where, _, message = first[len(prefix):].partition(": error: ")
    ln, cl = map(int, where.split(":"))
    if line is not None:
        assert (ln, cl) == (line, col)
    if msg is not None:
        assert message == msg
    assert 1 <= ln <= len(text.splitlines()) + 1 and cl >= 1
    if ln <= len(text.splitlines()):  # at end of file there is no line to show
        assert r.stderr.splitlines()[1] == text.splitlines()[ln - 1]
        assert r.stderr.splitlines()[2] == " " * (cl - 1) + "^"


def test_opt_unknown_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.mlir"
    r = run_tpc("compile", str(ROOT / "examples" / "kepler.ham"), "--emit=ham", "-o", str(path))
    assert r.returncode == 0, r.stderr
    r = run_tpc("opt", str(path), "-p", "no-such-pass")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: unknown pass 'no-such-pass' (see 'tpc passes')"


def test_opt_runs_ham_degree(tmp_path: Path) -> None:
    path = tmp_path / "h.mlir"
    path.write_text(
        "builtin.module {\n  ham.system @S {\n    ham.state @q, @p : !ham.field<[1]>\n"
        "    ham.part @V {\n      %0 = arith.constant 0 : index\n"
        "      %1 = ham.load @q[%0] : f64\n      %2 = ham.ipow %1, 4 : f64\n"
        "      ham.yield %2 : f64\n    }\n    ham.hamiltonian = [@V]\n  }\n}\n"
    )
    r = run_tpc("opt", str(path), "-p", "ham-degree")
    assert r.returncode == 0, r.stderr
    assert "degree = 4 : i64" in r.stdout and "quadratic = false" in r.stdout


# ------------------------------------------------------------------ the AST and the IR


def test_ast_locations_and_settings() -> None:
    src = (
        "system S {\n  param a = 1, b = -2.5\n  state q[N], p[N]\n"
        "  H = sum(i: p[i]^2) + a * sum(i < j: q[i] * q[j])\n}\n"
        "simulate {\n  integrator = leapfrog\n  dt = -0.5\n  steps = 1_000\n"
        '  q = [1, 2.5, -3]\n  init = "x.json"\n}\n'
    )
    program = syntax.parse(src, "t.ham")
    sys_ = program.system
    assert [(p.name, p.value) for p in sys_.params] == [("a", 1.0), ("b", -2.5)]
    assert (sys_.params[1].loc.line, sys_.params[1].loc.col) == (2, 16)
    h = sys_.hamiltonians[0].expr
    pair = h.rhs.rhs
    assert isinstance(pair, Reduction) and pair.kind == "lt" and pair.vars == ["i", "j"]
    assert (pair.loc.line, pair.loc.col) == (4, 28)
    first = h.lhs
    assert isinstance(first, Reduction) and first.kind == "index"
    assert isinstance(first.body.lhs, Index) and isinstance(first.body.lhs.indices[0], Name)
    settings = {s.name: s for s in program.settings}
    assert settings["integrator"].value == Word("leapfrog")
    assert settings["dt"].value == -0.5
    assert (settings["dt"].value_loc.line, settings["dt"].value_loc.col) == (8, 8)
    assert settings["steps"].value == 1000 and isinstance(settings["steps"].value, int)
    assert settings["q"].value == [1, 2.5, -3]
    assert settings["init"].value == "x.json"


def test_params_hoisted_and_scalar_lets_computed_once() -> None:
    src = (
        "system S {\n  param k = 2\n  state q[N], p[N]\n  let c = k * k\n"
        "  H = sum(i: c * p[i]^2 + c * q[i]^2 * 0.5)\n}\n"
    )
    _, module = pipeline.frontend(src, "t.ham")
    (part,) = system_of(module).parts
    block = part.body.block
    top = list(block.ops)
    refs = [op for op in module.walk() if isinstance(op, ham.ParamRefOp)]
    assert len(refs) == 1 and refs[0].parent_block() is block
    muls = [op for op in top if isinstance(op, arith.MulfOp)]
    assert len(muls) == 1  # c = k * k, once, at the top level, not inside the loop
    sums = [op for op in top if isinstance(op, ham.SumOp)]
    assert len(sums) == 1
    assert not any(isinstance(op, ham.ParamRefOp) for op in sums[0].walk())


def test_parts_named_by_lets_and_grouped_by_dependence() -> None:
    src = (
        "system S {\n  param k = 2\n  state q[3], p[3]\n  let T = dot(p, p) / 2\n"
        "  let Vtrap = k * dot(q, q)\n  let Vweak = dot(q, q)^2\n"
        "  H = T + Vtrap + Vweak + 0.1 * q[0] * p[1] - q[1]\n}\n"
    )
    _, module = pipeline.frontend(src, "t.ham")
    system = system_of(module)
    assert system.hamiltonian.part_names == ["T", "Vtrap", "Vweak", "W", "V"]
    assert [p.part_name for p in system.parts if "let" in p.attributes] == ["T", "Vtrap", "Vweak"]


def test_inferred_range_shrinks_with_offsets() -> None:
    src = "system S {\n  state q[N], p[N]\n  H = sum(p * p) + sum(i: (q[i + 1] - q[i])^2)\n}\n"
    _, module = pipeline.frontend(src, "t.ham")
    sums = [op for op in module.walk() if isinstance(op, ham.SumOp)]
    assert len(sums) == 2
    upper = sums[1].upper.owner
    assert isinstance(upper, arith.SubiOp)  # N - 1
    assert isinstance(upper.lhs.owner, ham.DimOp)
    assert upper.rhs.owner.value.value.data == 1
