"""IR dumps after each pass (`--print-ir-after[-all]`), the LLVM ladder run through the
same pass runner, and tpc's dialects and passes as an xDSL plug-in (`xdsl-opt`)."""

from __future__ import annotations

import inspect
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xdsl.passes
from tpc.passes import llvm_pipeline, registry_llvm
from tpc.passes.llvm_types import LLVMLoweringError
from xdsl.utils.arg_spec import parse_pipeline

from tpc import compiler, lowering, pipeline, registry

KEPLER = """
system Kepler {
    param mu = 1.0
    state q[3], p[3]
    H = dot(p, p) / 2 - mu / norm(q)
}
"""

LABEL = re.compile(r"^// -----// IR Dump After (\S*) //----- //$", re.M)


def script(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    assert exe, f"{name} is not installed next to this interpreter"
    return exe


def ham_module():
    _, module = pipeline.frontend(KEPLER, "kepler.ham")
    pipeline.PassRunner().run(module, ["ham-degree"])
    return module


def dumps(text: str) -> list[tuple[str, str]]:
    """(label, IR) for each dump in `text`, in order."""
    parts = LABEL.split(text)
    assert parts[0] == "", f"text before the first dump: {parts[0][:200]!r}"
    return list(zip(parts[1::2], parts[2::2]))


def run_dumped(spec, module=None, **kw) -> list[tuple[str, str]]:
    out = io.StringIO()
    pipeline.PassRunner(dump=out, **kw).run(module or ham_module(), spec)
    return dumps(out.getvalue())


# --- one table-driven loader for the LLVM passes --------------------------------------------


def test_llvm_registry_is_one_table_driven_loader():
    own = [name for name, f in vars(registry_llvm).items()
           if inspect.isfunction(f) and f.__module__ == registry_llvm.__name__]
    assert own == ["_load"]
    for name, load in registry_llvm.LLVM_PASSES.items():
        assert load().name == name


def test_tpc_passes_lists_the_llvm_passes():
    proc = subprocess.run([script("tpc"), "passes"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert set(registry_llvm.LLVM_PASSES) <= listed


def test_llvm_passes_follow_the_named_pipeline():
    specs = list(parse_pipeline(",".join(llvm_pipeline.llvm_pipeline("nvptx"))))
    passes = llvm_pipeline.llvm_passes("nvptx")
    assert [p.name for p in passes] == [s.name for s in specs][:-1]
    assert specs[-1].name == "reconcile-unrealized-casts"
    math = next(p for p in passes if p.name == "convert-math-to-llvm")
    assert math.target == "nvptx"


# --- --print-ir-after(-all): the dump comes after the pass that labels it -----------------


def test_print_after_all_labels_each_dump_with_the_pass_that_just_ran():
    got = run_dumped(["ham-derive", "sym-integrator", "sym-flow-kinds", "sym-fuse-stages"], print_after_all=True)
    assert [label for label, _ in got] == ["ham-derive", "sym-integrator", "sym-flow-kinds", "sym-fuse-stages"]
    (_, derive), (_, integrate), _, (_, fuse) = got
    assert "ham.gradient @V wrt @q" in derive and "sym.scheme" not in derive
    assert "sym.scheme @leapfrog" in integrate and "fsal" not in integrate
    assert "fsal" in fuse


def test_print_after_a_pass_in_the_middle():
    got = run_dumped(["ham-derive", "sym-integrator", "sym-flow-kinds", "sym-fuse-stages"],
                     print_after=["sym-integrator"])
    assert [label for label, _ in got] == ["sym-integrator"]
    assert "sym.scheme @leapfrog" in got[0][1] and "fsal" not in got[0][1]


def test_print_after_the_last_pass():
    got = run_dumped(["ham-derive"], print_after=["ham-derive"])
    assert [label for label, _ in got] == ["ham-derive"]
    assert "ham.gradient @T wrt @p" in got[0][1]


def test_pass_options_do_not_change_the_label():
    got = run_dumped(["ham-derive", "sym-integrator{integrator=yoshida4}"],
                     print_after=["sym-integrator"])
    assert [label for label, _ in got] == ["sym-integrator"]
    assert 'integrator = "yoshida4"' in got[0][1]


def test_nothing_is_dumped_unless_asked():
    assert run_dumped(["ham-derive", "sym-integrator"]) == []


class _NoFinalCallback(xdsl.passes.PassPipeline):
    """A pass pipeline that calls back only between passes, never after the last one."""

    def apply(self, ctx, op) -> None:
        for i, p in enumerate(self.passes):
            p.apply(ctx, op)
            if self.callback is not None and i + 1 < len(self.passes):
                self.callback(p, op, self.passes[i + 1])


@pytest.mark.parametrize("pipeline_cls", [xdsl.passes.PassPipeline, _NoFinalCallback])
def test_last_pass_dumped_exactly_once(monkeypatch, pipeline_cls):
    monkeypatch.setattr(xdsl.passes, "PassPipeline", pipeline_cls)
    got = run_dumped(["ham-derive", "sym-integrator"], print_after_all=True)
    assert [label for label, _ in got] == ["ham-derive", "sym-integrator"]
    assert "sym.scheme" in got[1][1]


# --- the LLVM ladder goes through the runner -----------------------------------------------


def lowered_dumps(emit: str, **kw) -> tuple[list[tuple[str, str]], object]:
    out = io.StringIO()
    module = ham_module()
    runner = pipeline.PassRunner(dump=out, **kw)
    lowering.lower(module, emit, compiler.Options(integrator="leapfrog"), runner)
    return dumps(out.getvalue()), module


def test_llvm_passes_are_dumped_after_each_one():
    got, module = lowered_dumps("llvm", print_after_all=True)
    labels = [label for label, _ in got]
    llvm_names = [spec.name for spec in parse_pipeline(",".join(llvm_pipeline.llvm_pipeline()))]
    assert labels[-len(llvm_names):] == llvm_names
    assert labels[:4] == ["ham-derive", "sym-integrator", "sym-flow-kinds", "sym-fuse-stages"]
    ir = dict(got)
    assert "scf.for" in ir["cse"] and "scf." not in ir["convert-scf-to-cf"]
    assert "func.func" in ir["convert-cf-to-llvm"]
    assert "func.func" not in ir["convert-func-to-llvm"] and "llvm.func" in ir["convert-func-to-llvm"]
    assert "unrealized_conversion_cast" in ir["convert-func-to-llvm"]
    assert "unrealized_conversion_cast" not in ir["reconcile-unrealized-casts"]
    assert all(op.name.startswith("llvm.") for op in module.body.ops)


def test_ptx_lowers_math_for_nvptx_through_the_runner():
    out = io.StringIO()
    _, module = pipeline.frontend(
        "system P { param g = 9.8\n state q[1], p[1]\n H = p[0]^2 / 2 - g * cos(q[0]) }", "p.ham")
    pipeline.PassRunner().run(module, ["ham-degree"])
    runner = pipeline.PassRunner(dump=out, print_after=["convert-math-to-llvm"])
    lowering.lower(module, "ptx", compiler.Options(integrator="leapfrog"), runner)
    [(label, ir)] = dumps(out.getvalue())
    assert label == "convert-math-to-llvm"
    assert "llvm.call @__nv_cos" in ir and "= math.cos" not in ir


def test_make_llvm_default_runner_is_silent_and_still_checks(capsys):
    module = pipeline.parse_ir(
        """func.func @f(%a: memref<?xf64>) -> index {
          %c0 = arith.constant 0 : index
          %d = memref.dim %a, %c0 : memref<?xf64>
          func.return %d : index
        }""", "dim.mlir")
    with pytest.raises(LLVMLoweringError, match="memref.dim"):
        lowering.make_llvm(module)
    captured = capsys.readouterr()
    assert "IR Dump" not in captured.err + captured.out


def test_make_llvm_runs_through_the_given_runner():
    module = pipeline.parse_ir(
        """func.func @f(%a: memref<?xf64>, %i: index) -> f64 {
          %x = memref.load %a[%i] : memref<?xf64>
          %y = math.cos %x : f64
          func.return %y : f64
        }""", "cos.mlir")
    out = io.StringIO()
    lowering.make_llvm(module, "nvptx", pipeline.PassRunner(dump=out, print_after_all=True))
    got = dumps(out.getvalue())
    assert [label for label, _ in got] == [
        spec.name for spec in parse_pipeline(",".join(llvm_pipeline.llvm_pipeline("nvptx")))]
    assert "__nv_cos" in dict(got)["convert-math-to-llvm"]


# --- xDSL plug-in ------------------------------------------------------------------------------


def test_universe_holds_tpcs_own_dialects_and_passes():
    from xdsl.universe import Universe

    u = registry.UNIVERSE
    assert isinstance(u, Universe)
    assert set(u.all_dialects) == {"ham", "sym"}
    assert u.all_dialects["ham"]().name == "ham"
    assert u.all_dialects["sym"]().name == "sym"
    for name in ("ham-degree", "ham-derive", "sym-integrator", "sym-lower-loops",
                 "convert-func-to-llvm", "convert-math-to-llvm"):
        assert u.all_passes[name]().name == name
    # xDSL refuses names defined twice: those stay xDSL's.
    for name in ("canonicalize", "cse", "reconcile-unrealized-casts", "convert-scf-to-cf"):
        assert name not in u.all_passes


def test_multiverse_finds_tpc_through_the_entry_point():
    from xdsl.universe import Universe

    multi = Universe.get_multiverse()  # raises on a name clash
    for name in ("ham-degree", "ham-derive", "sym-integrator", "convert-func-to-llvm"):
        assert multi.all_passes[name]().__module__.startswith("tpc.passes."), \
            "tpc's xdsl.universe entry point is not installed: run `pip install -e .`"
    assert multi.all_dialects["ham"]().name == "ham"


def test_xdsl_opt_lists_tpc_passes():
    proc = subprocess.run([script("xdsl-opt"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listed = re.sub(r"\s+", "", proc.stdout)  # the list is wrapped at hyphens
    for name in ("ham-degree", "ham-derive", "sym-integrator", "sym-lower-loops",
                 "convert-func-to-llvm"):
        assert name in listed


def test_xdsl_opt_runs_tpc_passes():
    buf = io.StringIO()
    _, module = pipeline.frontend(KEPLER, "kepler.ham")
    pipeline.print_ir(module, buf)
    proc = subprocess.run([script("xdsl-opt"), "-p", "ham-degree,ham-derive"], input=buf.getvalue(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'degree = "nonpoly"' in proc.stdout
    assert "ham.gradient @V wrt @q" in proc.stdout and "ham.gradient @T wrt @p" in proc.stdout
