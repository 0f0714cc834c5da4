"""Fuzzing the command line: no input may give a traceback, a hang or an unlocated error.

Three generators: random .ham programs built from the language's constructs, byte and token
mutations of the examples, and mutations of their IR for `tpc opt`. Every input runs through
`tpc.cli.main` in a forked worker process, so that a hang (> 10 s) or a crash is caught too.

CI runs a fixed, derandomized number of inputs (well under a minute). For a longer campaign set
TPC_FUZZ_BUDGET to the seconds each generator may use; the inputs then vary from run to run, and
with TPC_FUZZ_SAVE=DIR every failing input is saved there (and the run goes on) instead of
failing the test. Inputs that once failed live in tests/fuzz_corpus/ and are replayed.
"""

from __future__ import annotations

import collections
import contextlib
import io
import multiprocessing
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.ham"))
CORPUS = ROOT / "tests" / "fuzz_corpus"
BUDGET = float(os.environ.get("TPC_FUZZ_BUDGET", "0"))  # seconds per generator; 0: CI mode
SAVE = os.environ.get("TPC_FUZZ_SAVE")
HANG_SECONDS = 10
LOCATED = re.compile(r"^\S.*:\d+:\d+: error: ")
# Errors with no place in the input to point at: about the command line (a flag's value, tpc
# opt's pipeline) or a pass refusing IR that verifies.
COMMAND_LINE_ERROR = {
    "compile": None,
    "run": re.compile(r"^error: --"),
    "opt": re.compile(r"^error: (bad pass pipeline|unknown pass|[a-z0-9-]+: )"),
}


# ------------------------------------------------------------------------- the worker


@dataclass
class Outcome:
    rc: object  # the exit code, or None when something escaped main
    stderr: str
    escaped: str | None = None  # the traceback of an exception that escaped main
    hang: bool = False
    crash: int | None = None  # the worker's exit status when it died

    def problem(self, input_file: str, command: str) -> str | None:
        """What is wrong with this outcome, or None."""
        if self.hang:
            return f"hang (more than {HANG_SECONDS} s)"
        if self.crash is not None:
            return f"the process died (exit status {self.crash})"
        if self.escaped is not None:
            return "exception escaped main:\n" + self.escaped
        if "Traceback" in self.stderr:
            return "traceback on stderr:\n" + self.stderr
        if self.rc not in (0, 1):
            return f"exit code {self.rc}"
        if self.rc == 1:
            return _unlocated(self.stderr, input_file, COMMAND_LINE_ERROR[command])
        return None


def _unlocated(stderr: str, input_file: str, allowed: re.Pattern | None) -> str | None:
    lines = stderr.splitlines()
    if allowed and lines and allowed.match(lines[0]):
        return None
    if not lines or not LOCATED.match(lines[0]):
        return "error without FILE:LINE:COL:\n" + stderr
    if lines[0].startswith(input_file + ":") and (len(lines) < 3 or "^" not in lines[2]):
        return "error without the source line and caret:\n" + stderr
    return None


def _no_native_run(sim, q0, p0, **kwargs):
    """Simulation.run without the JIT: the snapshot at t = 0 only."""
    from tpc import api

    q, p = np.asarray(q0, float), np.asarray(p0, float)
    return api.Trajectory(np.zeros(1), q[None], p[None], np.zeros(1), 0)


def _run_main(argv: list[str], native: bool = True) -> Outcome:
    from tpc import api, cli

    err = io.StringIO()
    stub = (contextlib.nullcontext() if native
            else mock.patch.object(api.Simulation, "run", _no_native_run))
    try:
        with stub, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    except SystemExit as e:
        rc = e.code
    except BaseException:
        return Outcome(None, err.getvalue(), escaped=traceback.format_exc())
    return Outcome(rc, err.getvalue())


def _serve(conn) -> None:
    while True:
        conn.send(_run_main(*conn.recv()))


class Worker:
    """A forked process that runs `tpc.cli.main`; restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.proc = None
        self.conn = None

    def run(self, argv: list[str], native: bool = True) -> Outcome:
        """`tpc ARGV`; with native=False the simulation itself is skipped (no JIT)."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((argv, native))
        if not self.conn.poll(HANG_SECONDS):
            self.close()
            return Outcome(None, "", hang=True)
        try:
            return self.conn.recv()
        except EOFError:
            self.proc.join()
            status = self.proc.exitcode
            self.proc = None
            return Outcome(None, "", crash=status)

    def _start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------------ checking


def compile_argv(path: Path, source: str) -> list[str]:
    """`tpc compile --emit=sym`, the cheapest stage that runs every pass before LLVM. The
    integrator is midpoint unless the program picks one, so that a non-separable H is valid."""
    argv = ["compile", str(path), "--emit=sym", "-o", str(path.with_suffix(".out"))]
    return argv if "integrator" in source else [*argv, "--integrator", "midpoint"]


def opt_argv(path: Path, passes: str) -> list[str]:
    return ["opt", str(path), "-p", passes, "-o", str(path.with_suffix(".out"))]


class Budget:
    """The CI mode's fixed example counts, or a time budget per generator."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.tried = 0
        self.outcomes: collections.Counter[str] = collections.Counter()

    def count(self, outcome: Outcome) -> None:
        """Tally the first error line without its location, to show what the inputs reach."""
        first = (outcome.stderr.splitlines() or ["ok"])[0]
        self.outcomes[re.sub(r"^\S*:\d+:\d+: ", "", first)[:60]] += 1

    def spent(self) -> bool:
        return BUDGET > 0 and time.monotonic() - self.start > BUDGET

    def repeat(self, run) -> None:
        """Run the hypothesis test once (CI), or in batches until the time is spent."""
        run()
        while BUDGET > 0 and not self.spent():
            run()


def fuzz_settings(ci_examples: int):
    return settings(
        max_examples=ci_examples if BUDGET == 0 else 200,
        derandomize=BUDGET == 0,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def check(worker: Worker, path: Path, data: bytes, argv: list[str], budget: Budget,
          native: bool = True) -> None:
    if budget.spent():
        return
    budget.tried += 1
    path.write_bytes(data)
    outcome = worker.run(argv, native)
    budget.count(outcome)
    problem = outcome.problem(str(path), argv[0])
    if problem is None:
        return
    if SAVE:
        save = Path(SAVE)
        save.mkdir(parents=True, exist_ok=True)
        name = f"{path.stem}-{budget.tried}{path.suffix}"
        (save / name).write_bytes(data)
        (save / (name + ".txt")).write_text(" ".join(argv[:1] + argv[2:]) + "\n" + problem)
        return
    pytest.fail(f"tpc {' '.join(argv)}: {problem}\n--- input ---\n{data!r}")


def report(name: str, budget: Budget) -> None:
    if BUDGET:
        print(f"\nfuzz {name}: {budget.tried} inputs in {time.monotonic() - budget.start:.0f} s")
        for text, n in budget.outcomes.most_common(25):
            print(f"  {n:6}  {text}")


# ------------------------------------------------------------- generated programs

# Mostly the names the generated programs declare, so that many of them are valid.
NAMES = ["q", "p", "q", "p", "k", "m", "g", "N", "i", "j", "V", "T", "x", "sin", "L", "zz",
         "c", "mu"]
LET_NAMES = ["V", "T", "a", "b", "V", "T", "V", "a", "sin", "q"]
PARAM_NAMES = ["k", "g", "mu", "k", "g", "mu", "k", "cos", "N"]
FUNCS = ["sin", "cos", "exp", "log", "sqrt", "abs", "tanh", "norm", "dot", "cross", "sum",
         "erf", "erfc",
         "foo"]
NUMBER_TEXT = ["1", "2", "0.5", "1", "2", "3", "0.5", ".5", "1e-3", "2.5E+4", "100_000", "0",
               "0.0", "1e309", "1e-400", "1" + "0" * 400, "9" * 25, "2147483648", "1_", "007"]


def usually(n: int) -> st.SearchStrategy[bool]:
    """True n times in n + 1 (hypothesis draws small integers far more often than uniformly)."""
    return st.sampled_from([True] * n + [False])


numbers = st.one_of(st.integers(0, 40).map(str), st.sampled_from(NUMBER_TEXT),
                    st.floats(0, 1e6, allow_nan=False).map(repr))
names = st.sampled_from(NAMES)
index_atoms = st.sampled_from(["0", "1", "2", "i", "j", "N", "i + 1", "i - 1", "N - 1", "j + 2",
                               "-1", "k", "1.5", "2*i", "99999999999"])


def _index(e):
    parts = st.lists(st.one_of(index_atoms, e), min_size=1, max_size=3)
    return st.tuples(names, parts).map(lambda t: f"{t[0]}[{', '.join(t[1])}]")


def _call(e):
    return st.tuples(st.sampled_from(FUNCS), st.lists(e, max_size=3)).map(
        lambda t: f"{t[0]}({', '.join(t[1])})")


def _sum(e):
    head = st.sampled_from(["", "i: ", "j: ", "i < j: ", "i != j: ", "i in 0..N: ",
                            "i in 1..N - 1: ", "i in 0..3: ", "i in N..0: ", "k: "])
    return st.tuples(head, e).map(lambda t: f"sum({t[0]}{t[1]})")


def _binary(e):
    op = st.sampled_from([" + ", " - ", " * ", " / ", "^", " ^ -", "*-"])
    return st.tuples(e, op, e).map("".join)


expressions = st.recursive(
    st.one_of(numbers, names, st.sampled_from(["sum(p * p)", "sum(q * q)", "dot(p, p)",
                                                "norm(q)", "p[0]^2", "q[0]"])),
    lambda e: st.one_of(_binary(e), e.map(lambda x: "-" + x), e.map(lambda x: f"({x})"),
                        _index(e), _call(e), _sum(e)),
    max_leaves=12,
)

shapes = st.one_of(
    st.sampled_from(["N", "3", "N, 3", "2", "N, 2"]),
    st.lists(st.sampled_from(["N", "M", "1", "2", "3", "0", "200", "k"]),
             min_size=1, max_size=3).map(", ".join),
)


list_values = st.recursive(
    st.one_of(numbers, st.sampled_from(["nan", "inf", "x", '"s"', "-1", "[]"])),
    lambda v: st.lists(v, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=12,
)


@st.composite
def simulate_blocks(draw) -> str:
    keys = st.sampled_from(["integrator", "dt", "steps", "save_every", "q", "p", "m", "init",
                            "tmax", "dt"])
    values = st.one_of(numbers, list_values, st.sampled_from(
        ["leapfrog", "midpoint", "yoshida4", "euler", '"state.json"', '"x"', "-0.1"]))
    unique = draw(usually(5))
    items = draw(st.lists(st.tuples(keys, values), max_size=6,
                          unique_by=(lambda t: t[0]) if unique else None))
    return "simulate {\n" + "".join(f"  {k} = {v}\n" for k, v in items) + "}\n"


@st.composite
def periodic_decls(draw) -> list[str]:
    """box / cutoff / ewald declarations, valid or not."""
    lengths = st.one_of(numbers, st.lists(numbers, min_size=0, max_size=4).map(
        lambda xs: "[" + ", ".join(xs) + "]"))
    options = st.lists(st.tuples(
        st.sampled_from(["shift", "tolerance", "method", "surface", "rc", "x"]),
        st.one_of(numbers, st.sampled_from(["energy", "none", "pme", "ewald", "vacuum",
                                            "tinfoil", "1e-300", "nan"]))), max_size=3)
    out = []
    if draw(usually(5)):
        out.append(f"box {draw(st.sampled_from(['L', 'L', 'q', 'rc']))} = {draw(lengths)}")
    if draw(st.booleans()):
        opts = "".join(f", {k} = {v}" for k, v in draw(options))
        out.append(f"cutoff {draw(st.sampled_from(['rc', 'rc', 'L']))} = {draw(numbers)}{opts}")
    if draw(st.booleans()):
        opts = ", ".join(f"{k} = {v}" for k, v in draw(options)) or "tolerance = 1e-6"
        out.append(f"ewald {opts}")
    return out


@st.composite
def programs(draw) -> str:
    q, p = draw(st.sampled_from([("q", "p")] * 8 + [("x", "px"), ("q", "q")]))
    shape = draw(shapes)
    decls = []
    if draw(st.booleans()):
        items = draw(st.lists(st.tuples(st.sampled_from(PARAM_NAMES), numbers, st.booleans()),
                              min_size=1, max_size=3, unique_by=lambda t: t[0]))
        decls.append("param " + ", ".join(f"{n} = {'-' if neg else ''}{v}"
                                          for n, v, neg in items))
    if draw(st.booleans()):
        decls.append(f"input {draw(st.sampled_from(['m', 'm', 'c', 'q']))}[{draw(shapes)}]")
    if draw(usually(19)):
        other = shape if draw(usually(9)) else draw(shapes)
        decls.append(f"state {q}[{shape}], {p}[{other}]")
    lets = draw(st.lists(st.sampled_from(LET_NAMES), max_size=3, unique=draw(st.booleans())))
    decls += [f"let {name} = {draw(expressions)}" for name in lets]
    if draw(usually(19)):
        base = draw(st.sampled_from(["", "sum(p * p) / 2 + ", "dot(p, p) + "]))
        decls.append(f"H = {base}{draw(expressions)}")
    if not draw(usually(6)):
        decls += draw(periodic_decls())
    decls = draw(st.permutations(decls))
    sep = draw(st.sampled_from(["\n    ", " ", "\n", "  # note\n  ", "\r\n  "]))
    text = "system S {" + sep + sep.join(decls) + "\n}\n"
    if draw(st.booleans()):
        text += draw(simulate_blocks())
    return text


def test_fuzz_generated_programs(worker, workdir):
    budget = Budget()

    @fuzz_settings(ci_examples=350)
    @given(programs())
    def run(source: str) -> None:
        path = workdir / "gen.ham"
        check(worker, path, source.encode(), compile_argv(path, source), budget)

    budget.repeat(run)
    report("generated programs", budget)


# ------------------------------------------------------- run settings and init files

json_values = st.recursive(
    st.one_of(st.integers(-3, 3).map(str), st.sampled_from(
        ["0.5", "-0", "1e400", "1" + "0" * 400, "true", "null", '"x"', "NaN", "1e-5"])),
    lambda v: st.lists(v, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=16,
)
JSON_KEYS = ["q", "p", "q", "p", "m", "x", "t", "tpc_version", "input_m"]
json_objects = st.lists(st.tuples(st.sampled_from(JSON_KEYS), json_values), max_size=4).map(
    lambda items: "{" + ", ".join(f'"{k}": {v}' for k, v in items) + "}")
JSON_TOKENS = ["[", "]", "{", "}", ",", ":", '"', "[" * 40, "1e999", "\x00", "\\", "true"]
RUN_SYSTEMS = [
    "system S {\n  param k = 1\n  state q[2], p[2]\n  H = sum(p * p) + k * sum(q * q)\n}\n",
    "system S {\n  input m[N]\n  state q[N, 3], p[N, 3]\n  H = sum(i: dot(p[i], p[i]) / m[i])\n}\n",
]
RUN_FLAGS = [[], ["--steps", "5"], ["--dt", "0.1"], ["--steps", str(10**20)], ["--dt", "inf"],
             ["--save-every", "0"], ["--set", "k=2"], ["--set", "k=1e999"], ["--steps", "-1"]]


@st.composite
def runs(draw) -> tuple[str, bytes, list[str], bool]:
    """A program, an init file and `tpc run` flags; the init file is named by the simulate
    block or by --init."""
    source = draw(st.one_of(programs(), st.sampled_from(RUN_SYSTEMS)))
    init = draw(json_objects).encode()
    if draw(st.booleans()):
        init = draw(mutations(init, JSON_TOKENS))
    flags = draw(st.sampled_from(RUN_FLAGS))
    by_flag = "simulate" in source or draw(st.booleans())
    if not by_flag:
        source += 'simulate {\n  dt = 0.01\n  steps = 10\n  init = "state.json"\n}\n'
    elif "simulate" not in source:
        flags = ["--dt", "0.1", "--steps", "3", *flags]
    return source, init, flags, by_flag


def test_fuzz_run_settings(worker, workdir):
    """`tpc run` up to the simulation: the simulate block, flags, init files, the output."""
    budget = Budget()

    @fuzz_settings(ci_examples=250)
    @given(runs())
    def run(case) -> None:
        source, init, flags, by_flag = case
        path = workdir / "run.ham"
        (workdir / "state.json").write_bytes(init)
        argv = ["run", str(path), "-o", str(workdir / "run.npz"), "--quiet", *flags]
        if by_flag:
            argv += ["--init", str(workdir / "state.json")]
        check(worker, path, source.encode(), argv, budget, native=False)

    budget.repeat(run)
    report("run settings", budget)


# --------------------------------------------------------------- mutated examples

HAM_TOKENS = ["sum(", ")", "(", "[", "]", "{", "}", ",", "^", "-", "+", "*", "/", ":", "<", "!=",
              "..", "=", "0", "1e309", "let ", "H = ", "param ", "state ", "input ", "box ",
              "simulate {", '"', "#", "\n", "\t", "\x0c", "\u2028", "\x00", "N", "i", "q[i]",
              "sum(i < j: ", "^0", "/0", "9" * 30]


@st.composite
def mutations(draw, text: bytes, tokens: list[str]) -> bytes:
    """A few random edits of `text`: deletions, insertions of tokens or bytes, duplications
    and line swaps."""
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "token", "bytes", "duplicate", "lines"]))
        at = draw(st.integers(0, len(data)))
        size = draw(st.integers(1, 24))
        if kind == "delete":
            del data[at:at + size]
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(tokens)).encode()
        elif kind == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif kind == "duplicate":
            data[at:at] = data[at:at + size]
        else:
            lines = bytes(data).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@st.composite
def mutated_examples(draw) -> tuple[str, bytes]:
    example = draw(st.sampled_from(EXAMPLES))
    return example.name, draw(mutations(example.read_bytes(), HAM_TOKENS))


def test_fuzz_mutated_examples(worker, workdir):
    budget = Budget()
    # init files are named relative to the program
    (workdir / "nbody_init.json").write_bytes((ROOT / "examples" / "nbody_init.json").read_bytes())

    @fuzz_settings(ci_examples=350)
    @given(mutated_examples())
    def run(case: tuple[str, bytes]) -> None:
        name, data = case
        path = workdir / name
        source = data.decode("utf-8", errors="replace")
        check(worker, path, data, compile_argv(path, source), budget)

    budget.repeat(run)
    report("mutated examples", budget)


# ----------------------------------------------------------------------- mutated IR

IR_TOKENS = ["%0", "%1", "%7", "%99", "%i", ": f64", ": i64", ": index", "vector<2xf64>",
             "vector<3xf64>", '"', '"\\', "{", "}", "(", ")", "[", "]", "<", ">", "@q", "@p",
             "@nope", "ham.yield", "arith.addf", "ham.load", "loc(", "#", "!", "^bb0:", "//",
             "0x", "1e999", "-", ",", "=", "ham.sum", "\n", "attributes {}", "%0 = "]
# Pipelines for each IR level, including malformed ones and bad options.
HAM_PIPELINES = ["", "ham-degree", "ham-derive", "ham-degree,ham-derive",
                 "ham-derive,sym-integrator{integrator=midpoint},sym-fuse-stages",
                 "ham-degree{foo=1}", "ham-derive{", "nope", "canonicalize,cse,dce"]
SYM_PIPELINES = ["", "sym-fuse-stages", "sym-lower-loops", "sym-lower-loops{newton3=maybe}",
                 "sym-lower-loops,canonicalize,cse", "sym-fold-linear", "dce",
                 "sym-integrator{integrator=bogus}", "sym-lower-flows,sym-kahan,sym-lower-loops"]


@pytest.fixture(scope="module")
def ir_texts(workdir) -> list[tuple[str, str, list[str]]]:
    """(name, IR text, pipelines) for each example at the ham and the sym level."""
    from tpc import cli

    texts = []
    for example in EXAMPLES:
        for emit, pipelines in (("ham", HAM_PIPELINES), ("sym", SYM_PIPELINES)):
            out = workdir / f"{example.stem}.{emit}.mlir"
            argv = ["compile", str(example), f"--emit={emit}", "-o", str(out)]
            if "nbody" not in example.name and "pendulum" not in example.name:
                argv += ["--integrator", "midpoint"]
            assert cli.main(argv) == 0
            texts.append((out.name, out.read_text(), pipelines))
    return texts


def test_fuzz_mutated_ir(worker, workdir, ir_texts):
    budget = Budget()

    @fuzz_settings(ci_examples=300)
    @given(st.data())
    def run(data) -> None:
        name, text, pipelines = data.draw(st.sampled_from(ir_texts))
        mutated = data.draw(mutations(text.encode(), IR_TOKENS))
        passes = data.draw(st.sampled_from(pipelines))
        path = workdir / ("mut-" + name)
        check(worker, path, mutated, opt_argv(path, passes), budget)

    budget.repeat(run)
    report("mutated IR", budget)


# ------------------------------------------------------------------- the corpus


def corpus_cases() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*") if p.suffix in (".ham", ".mlir"))


def corpus_argv(path: Path, copy: Path) -> list[str]:
    """A .ham compiles to sym; a .mlir runs `tpc opt` with the passes named on its first line
    (`// passes: ham-derive`)."""
    data = path.read_bytes()
    if path.suffix == ".ham":
        return compile_argv(copy, data.decode("utf-8", errors="replace"))
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    passes = first.removeprefix("// passes:").strip() if first.startswith("// passes:") else ""
    return opt_argv(copy, passes)


@pytest.mark.parametrize("path", corpus_cases(), ids=lambda p: p.name)
def test_fuzz_corpus(worker, workdir, path: Path):
    """Inputs that once failed: each must now be handled cleanly."""
    copy = workdir / path.name
    data = path.read_bytes()
    copy.write_bytes(data)
    argv = corpus_argv(path, copy)
    problem = worker.run(argv).problem(str(copy), argv[0])
    assert problem is None, problem
