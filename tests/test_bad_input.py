"""Hostile input: undecodable bytes, sizes past the limits, semantics the checks once missed, bad
init files, broken IR. Each gives `file:line:col: error: ...`, the line, a caret and exit 1.

The command line runs in-process here (tpc.cli.main), which is what the fuzzer does too.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from tpc import cli, pipeline
from tpc.diagnostics import TpcError
from tpc.simulate import load_run_config

ROOT = Path(__file__).resolve().parent.parent
KEPLER = ROOT / "examples" / "kepler.ham"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path / "cache"))


def tpc(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def assert_error(rc: int, err: str, path: Path, line: int, col: int, msg: str, shown: str):
    """The error's first three lines: location and message, the source line, the caret."""
    assert rc == 1, err
    assert "Traceback" not in err
    first, text, caret = err.splitlines()[:3]
    assert first == f"{path}:{line}:{col}: error: {msg}"
    assert text == shown
    assert caret == " " * (col - 1) + "^"


def compile_error(capsys, tmp_path: Path, source: str | bytes, line: int, col: int, msg: str,
                  shown: str) -> None:
    path = tmp_path / "bad.ham"
    path.write_bytes(source if isinstance(source, bytes) else source.encode())
    rc, err = tpc(capsys, "compile", path, "--emit=ham", "-o", tmp_path / "out.mlir")
    assert_error(rc, err, path, line, col, msg, shown)


GOOD_SYSTEM = "system S {\n  state q[1], p[1]\n  H = p[0]^2 + q[0]^2\n}\n"

# ---------------------------------------------------------------------- decoding

DECODING = [
    ("not-utf8-in-comment", b"# caf\xe9\n" + GOOD_SYSTEM.encode(),
     1, 6, "invalid UTF-8 (byte 0xE9); a .ham file must be UTF-8 text", "# caf\ufffd"),
    ("nul-byte", b"system S {\n  state q[1], p[1]\n  H = p[0]^2\x00\n}\n",
     3, 13, "control character U+0000 in the source (a .ham file is text)", "  H = p[0]^2 "),
    ("binary", bytes(range(256)),
     1, 1, "control character U+0000 in the source (a .ham file is text)", " " * 10),
    ("nul-in-comment", b"system S { # \x00\n", 1, 14,
     "control character U+0000 in the source (a .ham file is text)", "system S { #  "),
    ("form-feed-line", b"system S {\x0c state q[1], p[1]\n H = p[0]^2 $\n}\n",
     2, 13, "unexpected character '$'", " H = p[0]^2 $"),
    ("line-separator-in-comment",
     "# a\u2028b\nsystem S {\n  state q[1], p[1]\n  H = p[0]^2 $\n}\n".encode(),
     4, 14, "unexpected character '$'", "  H = p[0]^2 $"),
    ("crlf", b"system S {\r\n  state q[1], p[1]\r\n  H = p[0]^2 $\r\n}\r\n",
     3, 14, "unexpected character '$'", "  H = p[0]^2 $"),
    ("only-a-comment", b"# nothing here\n\n",
     1, 1, "the file is empty (expected 'system NAME { ... }')", "# nothing here"),
]


@pytest.mark.parametrize("source,line,col,msg,shown", [c[1:] for c in DECODING],
                         ids=[c[0] for c in DECODING])
def test_decoding(capsys, tmp_path, source, line, col, msg, shown):
    compile_error(capsys, tmp_path, source, line, col, msg, shown)


def test_byte_order_mark_is_skipped(capsys, tmp_path):
    path = tmp_path / "bom.ham"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_SYSTEM.encode())
    assert tpc(capsys, "compile", path, "--emit=ham", "-o", tmp_path / "o.mlir")[0] == 0


def test_fifo_source_does_not_hang(capsys, tmp_path):
    path = tmp_path / "fifo.ham"
    os.mkfifo(path)
    rc, err = tpc(capsys, "compile", path, "--emit=ham")
    assert rc == 1 and err.strip() == f"error: cannot read '{path}': not a regular file"


# -------------------------------------------------------------------- size limits


def one_line_h(expr: str, shape: str = "1") -> str:
    return f"system S {{\n  state q[{shape}], p[{shape}]\n  H = {expr}\n}}\n"


def test_large_programs_compile(capsys, tmp_path):
    """What a user could plausibly write: a 500-term sum, 1,500 chained lets, long chains."""
    lets = "".join(f"  let a{i} = {f'a{i - 1}' if i else 'q[0]'} * 0.5 + 1\n" for i in range(1500))
    sources = [
        one_line_h(" + ".join(["p[0]^2"] * 500)),
        "system S {\n  state q[1], p[1]\n" + lets + "  H = p[0]^2 + a1499\n}\n",
        one_line_h("p[0]^2 + " + "-" * 2000 + "q[0]"),
        one_line_h("p[0]^2 + " + "^".join(["q[0]"] * 300)),
        one_line_h("sum(p * p) + sum(" + " + ".join(["q * q"] * 300) + ")", "N, 3"),
    ]
    for k, source in enumerate(sources):
        path = tmp_path / f"big{k}.ham"
        path.write_text(source)
        rc, err = tpc(capsys, "compile", path, "--emit=ham", "-o", tmp_path / "o.mlir")
        assert rc == 0, err


def nested_sums(n: int) -> str:
    body = "q[i0]"
    for k in range(n):
        body = f"sum(i{k}: q[i{k}] * {body})"
    return one_line_h(f"sum(p * p) + {body}", "N")


def sum_col(source: str, k: int) -> int:
    """The column of the k-th (from 0) `sum(` on line 3."""
    return [m.start() + 1 for m in re.finditer(r"sum\(", source.split("\n")[2])][k]


LIMITS = [
    ("deep-negation", one_line_h("-" * 6000 + "q[0]"), 3, 1008,
     "expression nested deeper than 5000 levels (counting the lets it uses)"),
    # at the 17th sum from the inside, after sum(p * p) and 60 - 17 outer sums
    ("nested-sums", nested_sums(60), 3, sum_col(nested_sums(60), 1 + 60 - 17),
     "sums nested deeper than 16 levels"),
    ("rank", "system S {\n  state q[" + ", ".join(["2"] * 300) + "], p[1]\n  H = sum(p)\n}\n",
     2, 35, "'q' has 300 dimensions, more than the limit of 8"),
    ("huge-dimension", one_line_h("sum(p)", "1000000000000"), 2, 11,
     "dimension 1000000000000 exceeds the limit of 2147483647"),
    ("dimension-digits", one_line_h("sum(p)", "9" * 5000), 2, 11,
     f"dimension {'9' * 12}...{'9' * 8} (5000 characters) exceeds the limit of 2147483647"),
    ("too-many-elements", one_line_h("sum(p)", "100000, 100000, 2"), 2, 19,
     "'q' has more than 2147483647 elements in its fixed dimensions"),
    ("long-vector", one_line_h("sum(p)", "N, 1000"), 2, 14,
     "the last dimension of 'q' is 1000, more than the limit of 128 for a fixed last dimension "
     "(it is carried as a vector); use a size symbol (q[N]) for long arrays"),
    ("number-400-digits", one_line_h("1" + "0" * 400 + " * p[0]^2"), 3, 7,
     "number 100000000000...00000000 (401 characters) is too large for a 64-bit float "
     "(the largest is about 1.8e308)"),
    ("number-5000-digits", one_line_h("1" + "0" * 5000 + " * p[0]^2"), 3, 7,
     "number 100000000000...00000000 (5001 characters) is too large for a 64-bit float "
     "(the largest is about 1.8e308)"),
    ("param-overflows", "system S {\n  param k = 1e309\n  state q[1], p[1]\n  H = k * p[0]^2\n}\n",
     2, 13, "number 1e309 is too large for a 64-bit float (the largest is about 1.8e308)"),
    ("index-beyond-i64", one_line_h("p[99999999999999999999]"), 3, 9,
     "index into 'p': 100000000000000000000 exceeds the limit of 2147483647"),
    ("offset-beyond-i64", one_line_h("sum(i: p[i + 99999999999999999999])", "N"), 3, 20,
     "index into 'p': 100000000000000000000 exceeds the limit of 2147483647"),
    ("exponent-beyond-i64", one_line_h("p[0]^-99999999999999999999"), 3, 13,
     "integer exponent 100000000000000000000 exceeds the limit of 2147483647"),
    ("deep-simulate-list", GOOD_SYSTEM + "simulate {\n  q = " + "[" * 5000 + "]" * 5000 + "\n}\n",
     6, 7, "lists nested deeper than 32 levels"),
]


@pytest.mark.parametrize("source,line,col,msg", [c[1:] for c in LIMITS],
                         ids=[c[0] for c in LIMITS])
def test_limit(capsys, tmp_path, source, line, col, msg):
    t0 = time.perf_counter()
    compile_error(capsys, tmp_path, source, line, col, msg, source.split("\n")[line - 1])
    assert time.perf_counter() - t0 < 10


# ----------------------------------------------------------------------- semantics

SEMANTICS = [
    ("norm-of-matrix", one_line_h("sum(p * p) + sum(norm(q))", "2, 3"), 3, 24,
     "'norm' of shape [2, 3] would give a fixed-length vector of results, which is not "
     "supported; apply it to one row at a time (norm(x[k]))"),
    ("dot-of-matrix", one_line_h("sum(dot(p, p))", "N, 2, 3"), 3, 11,
     "'dot' of shape [N, 2, 3] would give a fixed-length vector of results, which is not "
     "supported; apply it to one row at a time (dot(x[k]))"),
    ("two-sizes-in-state", one_line_h("sum(p * p)", "N, M, 2"), 2, 14,
     "the state shape uses two size symbols, N and M; a state shape may use one size symbol, "
     "once"),
    ("size-twice-in-state", one_line_h("sum(p * p)", "N, N"), 2, 14,
     "the state shape uses 'N' twice; a state shape may use one size symbol, once"),
    ("divide-by-zero", one_line_h("p[0]^2 / 0"), 3, 16, "division by zero"),
    ("divide-by-negative-zero", one_line_h("p[0]^2 / -0.0"), 3, 16, "division by zero"),
    ("param-shadows-builtin", "system S {\n  param sin = 1.0\n  state q[1], p[1]\n"
     "  H = sin * p[0]^2\n}\n", 2, 9, "'sin' is a built-in function; it cannot also be a param"),
    ("let-shadows-builtin", "system S {\n  state q[1], p[1]\n  let exp = q[0]\n"
     "  H = exp + p[0]^2\n}\n", 3, 7, "'exp' is a built-in function; it cannot also be a let"),
]


@pytest.mark.parametrize("source,line,col,msg", [c[1:] for c in SEMANTICS],
                         ids=[c[0] for c in SEMANTICS])
def test_semantic_error(capsys, tmp_path, source, line, col, msg):
    compile_error(capsys, tmp_path, source, line, col, msg, source.split("\n")[line - 1])


def test_power_zero_is_one(capsys, tmp_path):
    """x^0 at x = 0: its derivative must not be 0 * 0^-1."""
    path = tmp_path / "pow0.ham"
    path.write_text("system S {\n  state q[N, 3], p[N, 3]\n"
                    "  H = sum(p * p) + sum(q^0) + q[0, 1]^0 + sum(q * q)^-0\n}\n"
                    "simulate { integrator = leapfrog dt = 0.1 steps = 10\n"
                    "  q = [[0, 0, 0]] p = [[1, 0, 0]] }\n")
    out = tmp_path / "pow0.npz"
    rc, err = tpc(capsys, "run", path, "-o", out, "--quiet")
    assert rc == 0, err
    with np.load(out) as d:
        assert np.all(np.isfinite(d["q"])) and d["H"][0] == pytest.approx(1 + 3 + 1 + 1)


# ---------------------------------------------------------------------- init files

SYSTEM = "system S {\n  state q[2], p[2]\n  H = sum(p * p) + sum(q * q)\n}\n"
RUN = SYSTEM + "simulate {\n  dt = 0.1\n  steps = 10\n}\n"

JSON_ERRORS = [
    ("integer-400-digits", '{"q": [1' + "0" * 400 + ', 0], "p": [0, 1]}', 1, 8,
     "init file '{init}': the number 100000000000...00000000 (401 characters) is too large "
     "for a 64-bit float"),
    ("deep-array", '{"q": ' + "[" * 2000 + "]" * 2000 + ', "p": [0, 1]}', 1, 39,
     "init file '{init}': arrays nested deeper than 32 levels"),
    ("boolean", '{"q": [1, 0],\n "p": [true, 1]}', 2, 8,
     "init file '{init}': expected a number, got true"),
    ("null", '{"q": [null, 0], "p": [0, 1]}', 1, 8,
     "init file '{init}': expected a number, got null"),
    ("string", '{"q": ["1", 0], "p": [0, 1]}', 1, 8,
     "init file '{init}': expected a number, got the string \"1\""),
    ("string-value", '{"q": "abc", "p": [0, 1]}', 1, 7,
     "init file '{init}': expected a number, got the string \"abc\""),
    ("malformed", '{"q": [1, 0] "p": [0, 1]}', 1, 14,
     "cannot parse init file '{init}': Expecting ',' delimiter"),
    ("not-an-object", "\n[[1, 0], [0, 1]]", 2, 1,
     "cannot use init file '{init}': expected a JSON object of arrays, got a list"),
    ("shape", '{"q": [1, 0],\n "p": [0, 1, 2]}', 2, 7, "'p' needs shape [2], got [3]"),
    ("not-utf8", b'{"q": [1, 0], "p": [0, 1]} \xff', 1, 28,
     "invalid UTF-8 (byte 0xFF); a .json file must be UTF-8 text"),
]


@pytest.mark.parametrize("text,line,col,msg", [c[1:] for c in JSON_ERRORS],
                         ids=[c[0] for c in JSON_ERRORS])
def test_init_json_error(capsys, tmp_path, text, line, col, msg):
    """--init errors point into the JSON file, at the offending value."""
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    init = tmp_path / "s.json"
    data = text if isinstance(text, bytes) else text.encode()
    init.write_bytes(data)
    rc, err = tpc(capsys, "run", path, "--init", init, "-o", tmp_path / "o.npz", "--quiet")
    shown = data.decode(errors="replace").split("\n")[line - 1]
    assert_error(rc, err, init, line, col, msg.replace("{init}", str(init)), shown)


def npz_bytes(tmp_path: Path, **arrays) -> bytes:
    path = tmp_path / "made.npz"
    np.savez_compressed(path, **arrays)
    return path.read_bytes()


@pytest.mark.parametrize("value,what", [
    (np.array([True, False]), "an array of bool"),
    (np.array(["1", "2"]), "an array of <U1"),
    (np.array([1 + 2j, 0]), "an array of complex128"),
    (np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), "an array of datetime64[D]"),
    (np.zeros(2, dtype=[("a", "f8")]), "an array of [('a', '<f8')]"),
], ids=["bool", "str", "complex", "datetime", "structured"])
def test_init_npz_non_numbers(capsys, tmp_path, value, what):
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    init = tmp_path / "s.npz"
    np.savez(init, q=value, p=np.zeros(2))
    rc, err = tpc(capsys, "run", path, "--init", init, "-o", tmp_path / "o.npz", "--quiet")
    assert rc == 1 and "Traceback" not in err
    assert err.strip() == f"{init}:1:1: error: initial value of 'q' must be numbers, got {what}"


def test_init_npz_damaged_anywhere(tmp_path):
    """Every single-byte corruption and every truncation of an .npz is a clean error (or, where
    the byte does not matter, a success)."""
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    program, module = pipeline.frontend(str(path))
    good = npz_bytes(tmp_path, q=np.array([1.0, 0.0]), p=np.array([0.0, 1.0]))
    init = tmp_path / "s.npz"
    damaged = [good[:k] for k in range(0, len(good), 7)]
    damaged += [good[:k] + bytes([good[k] ^ 0xFF]) + good[k + 1:] for k in range(len(good))]
    for data in damaged:
        init.write_bytes(data)
        try:
            load_run_config(program, module.ops.first, init=str(init))
        except TpcError as e:
            assert e.loc is not None  # in the file, or at the system for a lost array


def test_init_object_array(capsys, tmp_path):
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    init = tmp_path / "s.npz"
    np.savez(init, q=np.array([1, None], dtype=object), p=np.zeros(2))
    rc, err = tpc(capsys, "run", path, "--init", init, "-o", tmp_path / "o.npz", "--quiet")
    assert rc == 1 and "Traceback" not in err
    assert err.startswith(f"{init}:1:1: error: cannot read init file '{init}': unreadable .npz "
                          "archive (Object arrays cannot be loaded when allow_pickle=False)")


def test_init_fifo_does_not_hang(capsys, tmp_path):
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    init = tmp_path / "s.json"
    os.mkfifo(init)
    rc, err = tpc(capsys, "run", path, "--init", init, "-o", tmp_path / "o.npz", "--quiet")
    assert rc == 1 and err.strip() == f"error: cannot read init file '{init}': not a regular file"


def test_run_continues_from_its_own_output(capsys, tmp_path):
    """A tpc output is a valid init file: its last snapshot and its inputs."""
    nbody = ROOT / "examples" / "nbody.ham"
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    rc, err = tpc(capsys, "run", nbody, "--steps", 50, "--save-every", 10, "-o", first, "--quiet")
    assert rc == 0, err
    rc, err = tpc(capsys, "run", nbody, "--steps", 50, "--save-every", 10, "--init", first,
                  "-o", second, "--quiet")
    assert rc == 0, err
    with np.load(first) as a, np.load(second) as b:
        np.testing.assert_array_equal(b["q"][0], a["q"][-1])
        np.testing.assert_array_equal(b["input_m"], a["input_m"])
        assert str(a["tpc_version"]) and int(a["steps_done"]) == 50
        assert float(a["t_final"]) == pytest.approx(0.5) and float(a["dt"]) == 0.01
        assert str(a["integrator"]) == "leapfrog" and str(a["precision"]) == "f64"
        assert len(str(a["source_sha256"])) == 64 and float(a["param_G"]) == 1.0


# ---------------------------------------------------------------------- tpc opt


@pytest.fixture
def kepler_ir(capsys, tmp_path) -> str:
    out = tmp_path / "k.mlir"
    assert tpc(capsys, "compile", KEPLER, "--emit=ham", "-o", out)[0] == 0
    return out.read_text()


def opt_error(capsys, tmp_path, text: str, *passes: str) -> tuple[int, str, Path]:
    path = tmp_path / "in.mlir"
    path.write_text(text)
    rc, err = tpc(capsys, "opt", path, *(["-p", passes[0]] if passes else []),
                  "-o", tmp_path / "out.mlir")
    return rc, err, path


def test_opt_type_edit(capsys, tmp_path, kepler_ir):
    text = kepler_ir.replace("%4 = arith.divf %3, %0 : f64", "%4 = arith.divf %3, %0 : i64")
    rc, err, path = opt_error(capsys, tmp_path, text, "ham-derive")
    line = text.split("\n").index("      %4 = arith.divf %3, %0 : i64") + 1
    assert_error(rc, err, path, line, 7, "invalid IR: Unexpected attribute i64",
                 "      %4 = arith.divf %3, %0 : i64")


def test_opt_use_before_def(capsys, tmp_path, kepler_ir):
    text = kepler_ir.replace("%4 = arith.divf %3, %0 : f64", "%4 = arith.divf %3, %8 : f64")
    rc, err, path = opt_error(capsys, tmp_path, text, "ham-derive")
    line = text.split("\n").index("      %4 = arith.divf %3, %8 : f64") + 1
    assert_error(rc, err, path, line, 7, "invalid IR: operand 1 of 'arith.divf' is used before "
                 "it is defined (or outside its scope)", "      %4 = arith.divf %3, %8 : f64")


def test_opt_undefined_value_at_its_use(capsys, tmp_path, kepler_ir):
    text = kepler_ir.replace("%4 = arith.divf %3, %0 : f64", "%4 = arith.divf %3, %99 : f64")
    rc, err, path = opt_error(capsys, tmp_path, text)
    line = text.split("\n").index("      %4 = arith.divf %3, %99 : f64") + 1
    assert_error(rc, err, path, line, 27, "values used but not defined: [%99]",
                 "      %4 = arith.divf %3, %99 : f64")


def test_opt_verifier_error_without_location(capsys, tmp_path, kepler_ir):
    text = kepler_ir.replace("ham.load @q[]", "ham.load @x[]")
    rc, err, path = opt_error(capsys, tmp_path, text)
    line = next(k for k, ln in enumerate(text.split("\n"), 1) if "@x[]" in ln)
    assert_error(rc, err, path, line, 7, "invalid IR: 'x' is not a state or input of @Kepler "
                 "(in ham.load)", text.split("\n")[line - 1])


def test_opt_pair_sum_without_its_kind(capsys, tmp_path):
    """A pair sum whose indices are not joined by '<' or 'ne' is an error at that token (it
    once tripped an assertion in xDSL's punctuation parser)."""
    text = ("builtin.module {\n  %0 = arith.constant 0 : index\n"
            "  %1 = ham.pair_sum %i = %j in %0 to %0 {\n  }\n}\n")
    rc, err, path = opt_error(capsys, tmp_path, text)
    assert_error(rc, err, path, 3, 24, "expected '<' or 'ne' between the two indices of "
                 "ham.pair_sum", "  %1 = ham.pair_sum %i = %j in %0 to %0 {")


def test_opt_reparses_an_ordered_pair_sum(tmp_path):
    """`sum(i != j: ...)` prints as `ham.pair_sum %i ne %j` and parses back (`!=` would not:
    the lexer reads `!` as the start of a type alias)."""
    src = (ROOT / "examples" / "nbody.ham").read_text().replace("sum(i < j:", "sum(i != j:")
    ham_file = tmp_path / "ne.ham"
    ham_file.write_text(src)
    ir = tmp_path / "ne.mlir"
    assert cli.main(["compile", str(ham_file), "--emit=ham", "-o", str(ir)]) == 0
    first = ir.read_text()
    assert " ne " in first and "!=" not in first
    again = tmp_path / "again.mlir"
    assert cli.main(["opt", str(ir), "-p", "ham-derive", "-o", str(again)]) == 0
    assert cli.main(["opt", str(again), "-o", str(tmp_path / "third.mlir")]) == 0
    assert (tmp_path / "third.mlir").read_text() == again.read_text()
    assert "ham.pair_sum" in again.read_text() and " ne " in again.read_text()


def sym_ir(capsys, tmp_path, src: Path, *flags: str) -> str:
    out = tmp_path / "s.mlir"
    assert tpc(capsys, "compile", src, "--emit=sym", "-o", out, *flags)[0] == 0
    return out.read_text()


def line_of(text: str, needle: str) -> tuple[int, str]:
    k, line = next((k, ln) for k, ln in enumerate(text.split("\n"), 1) if needle in ln)
    return k, line


def test_opt_refusal_points_at_the_op(capsys, tmp_path):
    """A pass that refuses an op (here: a time loop whose flows were not lowered) reports it at
    that op's line in the IR text, and names it, as a verifier error would."""
    text = sym_ir(capsys, tmp_path, KEPLER)
    rc, err, path = opt_error(capsys, tmp_path, text, "sym-lower-loops")
    line, shown = line_of(text, "sym.evolve @leapfrog")
    assert_error(rc, err, path, line, 3, "sym-lower-loops: scheme @leapfrog still has sym.flow "
                 "stages (run sym-lower-flows first) (in sym.evolve)", shown)


def test_opt_refusal_of_an_exact_loop_without_folding(capsys, tmp_path):
    ham_ir, text = tmp_path / "h.mlir", tmp_path / "s.mlir"
    assert tpc(capsys, "compile", ROOT / "examples" / "harmonic_chain.ham", "--emit=ham",
               "-o", ham_ir)[0] == 0
    assert tpc(capsys, "opt", ham_ir, "-p", "ham-derive,sym-integrator{integrator=exact},"
               "sym-flow-kinds,sym-fuse-stages", "-o", text)[0] == 0
    rc, err, path = opt_error(capsys, tmp_path, text.read_text(), "sym-fold-linear{enabled=false}")
    line, shown = line_of(text.read_text(), "sym.evolve @exact")
    assert_error(rc, err, path, line, 3, "integrator 'exact' is the exact flow of a linear "
                 "(quadratic-H) system, evaluated at each snapshot's t; it needs matrix-power "
                 "folding, which is disabled (--no-fold / fold=False) (in sym.evolve)", shown)


def test_opt_refusal_of_an_op_made_by_the_pipeline(capsys, tmp_path, kepler_ir):
    """An op a pass of the same pipeline created has no place in the text: the error still
    names it."""
    rc, err, _ = opt_error(capsys, tmp_path, kepler_ir,
                           "ham-derive,sym-integrator,sym-flow-kinds,sym-lower-loops")
    assert rc == 1 and err == ("error: sym-lower-loops: scheme @leapfrog still has sym.flow "
                               "stages (run sym-lower-flows first) (in sym.evolve)\n")


@pytest.mark.parametrize("backslashes", [28, 200])
def test_opt_unterminated_string_is_fast(capsys, tmp_path, backslashes):
    text = 'builtin.module attributes {a = "' + "\\\\" * backslashes + " x}\n"
    t0 = time.perf_counter()
    rc, err, path = opt_error(capsys, tmp_path, text)
    assert time.perf_counter() - t0 < 2
    assert_error(rc, err, path, 1, 32, "unterminated string literal (or an invalid escape in it)",
                 text.rstrip("\n"))


def test_opt_deep_nesting(capsys, tmp_path):
    text = "builtin.module {\n" + "builtin.module {" * 300 + "}" * 300 + "\n}\n"
    rc, err, path = opt_error(capsys, tmp_path, text)
    assert_error(rc, err, path, 2, 16 * 64, "IR nested deeper than 64 levels",
                 text.split("\n")[1])


@pytest.mark.parametrize("passes,msg", [
    ("ham-degree{foo=1}", "bad pass pipeline 'ham-degree{foo=1}': Provided arguments [\"foo\"] "
     "not found in expected arguments []"),
    ("sym-lower-loops{newton3=maybe}", "bad pass pipeline 'sym-lower-loops{newton3=maybe}': "
     "Incompatible types: given ('maybe',), expected <class 'bool'>"),
])
def test_opt_bad_pass_options(capsys, tmp_path, kepler_ir, passes, msg):
    rc, err, _ = opt_error(capsys, tmp_path, kepler_ir, passes)
    assert rc == 1 and err.strip() == f"error: {msg}"


def test_opt_not_utf8(capsys, tmp_path):
    path = tmp_path / "in.mlir"
    path.write_bytes(b"builtin.module {\n// \xc3\n}\n")
    rc, err = tpc(capsys, "opt", path)
    assert_error(rc, err, path, 2, 4, "invalid UTF-8 (byte 0xC3); a .mlir file must be UTF-8 text",
                 "// \ufffd")


def test_json_dump_round_trip(tmp_path):
    """Plain numbers of any JSON spelling still load."""
    path = tmp_path / "s.ham"
    path.write_text(RUN)
    (tmp_path / "s.json").write_text(json.dumps({"q": [1e-300, -0.0], "p": [1, 2.5E+3]}))
    program, module = pipeline.frontend(str(path))
    cfg = load_run_config(program, module.ops.first, init=str(tmp_path / "s.json"))
    np.testing.assert_array_equal(cfg.p0, [1, 2500])
