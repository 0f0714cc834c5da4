"""End to end: func-level MLIR -> llvm dialect -> llvmlite MCJIT -> ctypes calls."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from tpc.passes.llvm_pipeline import lower_to_llvm, standard_context
from tpc.passes.llvm_types import LLVMLoweringError
from tpc.runtime.jit import (
    CompiledLibrary,
    compile_llvm_module,
    llvm_ir_text,
    load_cached,
)
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser

F64, I64, PTR = ctypes.c_double, ctypes.c_int64, ctypes.c_void_p


def parse(text: str) -> ModuleOp:
    return Parser(standard_context(), text).parse_module()


def jit(text: str, tmp_path=None, key: str | None = None) -> CompiledLibrary:
    return compile_llvm_module(parse(text), cache_key=key, cache_dir=tmp_path)


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


SUM = """
func.func @sum(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %x = memref.load %a[%i] : memref<?xf64>
    %y = arith.addf %acc, %x : f64
    scf.yield %y : f64
  }
  return %r : f64
}
"""

KAHAN = """
func.func @kahan(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %s, %c = scf.for %i = %c0 to %n step %c1 iter_args(%sum = %z, %comp = %z) -> (f64, f64) {
    %x = memref.load %a[%i] : memref<?xf64>
    %y = arith.subf %x, %comp : f64
    %t = arith.addf %sum, %y : f64
    %d = arith.subf %t, %sum : f64
    %cn = arith.subf %d, %y : f64
    scf.yield %t, %cn : f64, f64
  }
  return %s : f64
}
"""


def _seq_sum(a: np.ndarray) -> float:
    s = 0.0
    for x in a.tolist():
        s += x
    return s


def _py_kahan(a: np.ndarray) -> float:
    s = c = 0.0
    for x in a.tolist():
        y = x - c
        t = s + y
        c = (t - s) - y
        s = t
    return s


def test_loop_sum_is_sequential_and_exact():
    lib = jit(SUM)
    f = lib.get("sum", F64, [PTR, I64])
    a = np.random.default_rng(0).standard_normal(10_001)
    # No reassociation allowed: the JIT must reproduce the left-to-right sum.
    assert f(ptr(a), a.size) == _seq_sum(a)
    assert f(ptr(a), 0) == 0.0


def test_kahan_survives_o3():
    lib = jit(KAHAN)
    f = lib.get("kahan", F64, [PTR, I64])
    # Ill-conditioned: one big term, many tiny ones a naive sum drops entirely.
    a = np.concatenate([[1.0], np.full(100_000, 1e-16)])
    exact = math.fsum(a)
    got = f(ptr(a), a.size)
    assert got == _py_kahan(a)  # bit-for-bit: nothing reassociated or contracted
    assert abs(got - exact) <= math.ulp(exact)
    assert _seq_sum(a) == 1.0 != exact  # naive summation loses every tiny term
    ir_text = lib.optimized_ir or ""
    for flag in (" fast ", " reassoc ", " contract ", "llvm.fma", "llvm.fmuladd"):
        assert flag not in ir_text


MULADD = """
func.func @muladd(%a: f64, %b: f64, %c: f64) -> f64 {
  %p = arith.mulf %a, %b : f64
  %s = arith.addf %p, %c : f64
  return %s : f64
}
"""


def test_no_fma_contraction():
    # a*b rounds to exactly -c, so the separately rounded result is 0 while a
    # fused multiply-add would return the 2**-60 rounding error of the product.
    f = jit(MULADD).get("muladd", F64, [F64, F64, F64])
    a = 1.0 + 2.0**-30
    assert f(a, a, -(1.0 + 2.0**-29)) == 0.0


CONTROL = """
func.func @collatz_steps(%n0: i64) -> i64 {
  %c0 = arith.constant 0 : i64
  %c1 = arith.constant 1 : i64
  %c2 = arith.constant 2 : i64
  %c3 = arith.constant 3 : i64
  %r:2 = scf.while (%n = %n0, %k = %c0) : (i64, i64) -> (i64, i64) {
    %go = arith.cmpi sgt, %n, %c1 : i64
    scf.condition(%go) %n, %k : i64, i64
  } do {
  ^bb0(%n: i64, %k: i64):
    %rem = arith.remsi %n, %c2 : i64
    %odd = arith.cmpi ne, %rem, %c0 : i64
    %next = scf.if %odd -> (i64) {
      %m = arith.muli %n, %c3 : i64
      %p = arith.addi %m, %c1 : i64
      scf.yield %p : i64
    } else {
      %h = arith.divsi %n, %c2 : i64
      scf.yield %h : i64
    }
    %k1 = arith.addi %k, %c1 : i64
    scf.yield %next, %k1 : i64, i64
  }
  return %r#1 : i64
}

func.func @clamp_count(%a: memref<?xf64>, %n: index, %lo: f64, %hi: f64) -> index {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%cnt = %c0) -> (index) {
    %x = memref.load %a[%i] : memref<?xf64>
    %below = arith.cmpf olt, %x, %lo : f64
    %above = arith.cmpf ogt, %x, %hi : f64
    %out = arith.ori %below, %above : i1
    %cl = arith.maximumf %x, %lo : f64
    %ch = arith.minimumf %cl, %hi : f64
    memref.store %ch, %a[%i] : memref<?xf64>
    %inc = scf.if %out -> (index) {
      %q = arith.addi %cnt, %c1 : index
      scf.yield %q : index
    } else {
      scf.yield %cnt : index
    }
    scf.yield %inc : index
  }
  return %r : index
}
"""


def _collatz(n: int) -> int:
    k = 0
    while n > 1:
        n = 3 * n + 1 if n % 2 else n // 2
        k += 1
    return k


def test_while_and_if():
    lib = jit(CONTROL)
    steps = lib.get("collatz_steps", I64, [I64])
    for n in (1, 2, 7, 27, 97, 871):
        assert steps(n) == _collatz(n)
    clamp = lib.get("clamp_count", I64, [PTR, I64, F64, F64])
    a = np.linspace(-2.0, 2.0, 101)
    expect = np.clip(a, -1.0, 1.0)
    n_out = int(np.sum((a < -1.0) | (a > 1.0)))
    assert clamp(ptr(a), a.size, -1.0, 1.0) == n_out
    np.testing.assert_array_equal(a, expect)


MATH = """
func.func @unary(%x: memref<?xf64>, %out: memref<?xf64>, %n: index, %which: i64) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    %v = memref.load %x[%i] : memref<?xf64>
    %s = math.sin %v : f64
    %c = math.cos %v : f64
    %e = math.exp %v : f64
    %l = math.log %v : f64
    %t = math.tanh %v : f64
    %q = math.sqrt %v : f64
    %k0 = arith.constant 0 : i64
    %k1 = arith.constant 1 : i64
    %k2 = arith.constant 2 : i64
    %k3 = arith.constant 3 : i64
    %k4 = arith.constant 4 : i64
    %is0 = arith.cmpi eq, %which, %k0 : i64
    %is1 = arith.cmpi eq, %which, %k1 : i64
    %is2 = arith.cmpi eq, %which, %k2 : i64
    %is3 = arith.cmpi eq, %which, %k3 : i64
    %is4 = arith.cmpi eq, %which, %k4 : i64
    %r4 = arith.select %is4, %t, %q : f64
    %r3 = arith.select %is3, %l, %r4 : f64
    %r2 = arith.select %is2, %e, %r3 : f64
    %r1 = arith.select %is1, %c, %r2 : f64
    %r0 = arith.select %is0, %s, %r1 : f64
    memref.store %r0, %out[%i] : memref<?xf64>
  }
  return
}

func.func @pow2(%x: memref<?xf64>, %y: memref<?xf64>, %out: memref<?xf64>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    %a = memref.load %x[%i] : memref<?xf64>
    %b = memref.load %y[%i] : memref<?xf64>
    %p = math.powf %a, %b : f64
    memref.store %p, %out[%i] : memref<?xf64>
  }
  return
}

func.func @powi(%x: f64, %k: i32) -> f64 {
  %r = math.fpowi %x, %k : f64, i32
  return %r : f64
}

func.func @misc(%x: f64) -> f64 {
  %a = math.absf %x : f64
  %f = math.floor %a : f64
  %c = math.ceil %a : f64
  %s = math.sinh %x : f64
  %h = math.cosh %x : f64
  %t = math.tan %x : f64
  %m = math.fma %f, %c, %s : f64
  %r1 = arith.addf %m, %h : f64
  %r2 = arith.addf %r1, %t : f64
  return %r2 : f64
}
"""


@pytest.fixture(scope="module")
def math_lib() -> CompiledLibrary:
    return jit(MATH)


@pytest.mark.parametrize(
    "which,ref",
    [(0, np.sin), (1, np.cos), (2, np.exp), (3, np.log), (4, np.tanh), (5, np.sqrt)],
)
def test_math_vs_numpy(math_lib, which, ref):
    f = math_lib.get("unary", None, [PTR, PTR, I64, I64])
    x = np.random.default_rng(which).uniform(0.01, 20.0, 513)
    out = np.empty_like(x)
    f(ptr(x), ptr(out), x.size, which)
    if ref is np.sqrt:
        np.testing.assert_array_equal(out, ref(x))  # correctly rounded everywhere
    else:
        np.testing.assert_allclose(out, ref(x), rtol=4e-16, atol=0)


def test_pow_powi_misc(math_lib):
    f = math_lib.get("pow2", None, [PTR, PTR, PTR, I64])
    rng = np.random.default_rng(7)
    x, y = rng.uniform(0.1, 5.0, 257), rng.uniform(-3.0, 3.0, 257)
    out = np.empty_like(x)
    f(ptr(x), ptr(y), ptr(out), x.size)
    np.testing.assert_allclose(out, np.power(x, y), rtol=4e-16, atol=0)

    powi = math_lib.get("powi", F64, [F64, ctypes.c_int32])
    for base in (1.5, -0.75, 2.0, 10.0):
        for k in (-7, -1, 0, 1, 2, 3, 10, 31):
            assert powi(base, k) == pytest.approx(base**k, rel=1e-14)
    assert powi(2.0, -1022) == 2.0**-1022  # exact power of two, far exponent

    misc = math_lib.get("misc", F64, [F64])
    for v in (-2.5, -0.3, 0.7, 1.9):
        a = abs(v)
        expect = math.fsum([math.floor(a) * math.ceil(a), math.sinh(v)]) + math.cosh(v)
        expect += math.tan(v)
        assert misc(v) == pytest.approx(expect, rel=1e-14)


CALLS = """
func.func private @sq(%x: f64) -> f64 {
  %y = arith.mulf %x, %x : f64
  return %y : f64
}
func.func private @norm2(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %x = memref.load %a[%i] : memref<?xf64>
    %s = func.call @sq(%x) : (f64) -> f64
    %t = arith.addf %acc, %s : f64
    scf.yield %t : f64
  }
  return %r : f64
}
func.func @energy(%q: memref<?xf64>, %p: memref<?xf64>, %n: index) -> f64 {
  %a = func.call @norm2(%q, %n) : (memref<?xf64>, index) -> f64
  %b = func.call @norm2(%p, %n) : (memref<?xf64>, index) -> f64
  %h = arith.constant 0.5 : f64
  %s = arith.addf %a, %b : f64
  %e = arith.mulf %h, %s : f64
  return %e : f64
}
"""


def test_calls_between_functions():
    lib = jit(CALLS)
    f = lib.get("energy", F64, [PTR, PTR, I64])
    rng = np.random.default_rng(3)
    q, p = rng.standard_normal(100), rng.standard_normal(100)
    assert f(ptr(q), ptr(p), q.size) == 0.5 * (_seq_sum(q * q) + _seq_sum(p * p))
    with pytest.raises(KeyError):
        lib.address("sq")  # private helper: internal linkage, not exported
    assert "define internal" in llvm_ir_text(parse(CALLS))


SCRATCH = """
func.func @reverse_via_scratch(%a: memref<8xf64>, %m: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c7 = arith.constant 7 : index
  %c8 = arith.constant 8 : index
  %buf = memref.alloca() : memref<8xf64>
  %dyn = memref.alloca(%m) : memref<?xi64>
  scf.for %i = %c0 to %c8 step %c1 {
    %x = memref.load %a[%i] : memref<8xf64>
    %j = arith.subi %c7, %i : index
    memref.store %x, %buf[%j] : memref<8xf64>
  }
  scf.for %i = %c0 to %m step %c1 {
    %ii = arith.index_cast %i : index to i64
    memref.store %ii, %dyn[%i] : memref<?xi64>
  }
  scf.for %i = %c0 to %c8 step %c1 {
    %x = memref.load %buf[%i] : memref<8xf64>
    memref.store %x, %a[%i] : memref<8xf64>
  }
  %last = arith.subi %m, %c1 : index
  %v = memref.load %dyn[%last] : memref<?xi64>
  %f = arith.sitofp %v : i64 to f64
  return %f : f64
}

func.func @ints(%x: f64, %a: i64, %b: i64) -> i64 {
  %q = arith.floordivsi %a, %b : i64
  %t = arith.fptosi %x : f64 to i64
  %s = arith.addi %q, %t : i64
  %c100 = arith.constant 100 : i64
  %m = arith.maxsi %s, %c100 : i64
  %small = arith.trunci %m : i64 to i32
  %back = arith.extsi %small : i32 to i64
  %idx = arith.index_cast %back : i64 to index
  %r = arith.index_cast %idx : index to i64
  return %r : i64
}
"""


def test_alloca_and_integer_ops():
    lib = jit(SCRATCH)
    f = lib.get("reverse_via_scratch", F64, [PTR, I64])
    a = np.arange(8.0)
    assert f(ptr(a), 5) == 4.0
    np.testing.assert_array_equal(a, np.arange(8.0)[::-1])

    ints = lib.get("ints", I64, [F64, I64, I64])
    assert ints(2.9, 1000, 7) == 1000 // 7 + 2
    assert ints(-2.9, -1000, 7) == max(-1000 // 7 - 2, 100)
    assert ints(-2.9, 1000, -7) == max(1000 // -7 - 2, 100)
    assert ints(0.0, -1001, -7) == max(-1001 // -7, 100)
    assert ints(250.5, -1, 3) == -1 + 250  # floor(-1/3) = -1


LOOP_SCRATCH = """
func.func @window_sums(%a: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %buf = memref.alloca() : memref<2xf64>
    %x = memref.load %a[%i] : memref<?xf64>
    memref.store %x, %buf[%c0] : memref<2xf64>
    memref.store %x, %buf[%c1] : memref<2xf64>
    %u = memref.load %buf[%c0] : memref<2xf64>
    %v = memref.load %buf[%c1] : memref<2xf64>
    %w = arith.addf %u, %v : f64
    %t = arith.addf %acc, %w : f64
    scf.yield %t : f64
  }
  return %r : f64
}
"""


def test_static_alloca_in_loop_is_hoisted():
    mod = parse(LOOP_SCRATCH)
    lower_to_llvm(mod)
    (fn,) = mod.ops
    entry = fn.body.blocks.first
    assert any(op.name == "llvm.alloca" for op in entry.ops)
    assert all(op.name != "llvm.alloca" for b in list(fn.body.blocks)[1:] for op in b.ops)
    f = compile_llvm_module(mod).get("window_sums", F64, [PTR, I64])
    a = np.arange(300_000, dtype=np.float64)  # would blow an 8 MiB stack if not hoisted
    assert f(ptr(a), a.size) == 2.0 * _seq_sum(a)


F32 = """
func.func @scale(%a: memref<?xf32>, %n: index, %k: f32) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %x = memref.load %a[%i] : memref<?xf32>
    %y = arith.mulf %x, %k : f32
    memref.store %y, %a[%i] : memref<?xf32>
    %w = arith.extf %y : f32 to f64
    %t = arith.addf %acc, %w : f64
    scf.yield %t : f64
  }
  return %r : f64
}
"""


def test_f32_memref():
    lib = jit(F32)
    f = lib.get("scale", F64, [PTR, I64, ctypes.c_float])
    a = np.linspace(0, 1, 33, dtype=np.float32)
    expect = a * np.float32(3.0)
    got = f(ptr(a), a.size, 3.0)
    np.testing.assert_array_equal(a, expect)
    assert got == _seq_sum(expect.astype(np.float64))


def test_object_cache_round_trip(tmp_path):
    key = "sum-test-v1"
    assert load_cached(key, cache_dir=tmp_path) is None
    first = jit(SUM, tmp_path, key)
    assert not first.from_cache
    second = load_cached(key, cache_dir=tmp_path)
    assert second is not None and second.from_cache
    assert second.object_code == first.object_code
    # compile_llvm_module itself also hits the cache.
    third = compile_llvm_module(parse(SUM), cache_key=key, cache_dir=tmp_path)
    assert third.from_cache
    a = np.random.default_rng(1).standard_normal(999)
    results = {lib.get("sum", F64, [PTR, I64])(ptr(a), a.size) for lib in (first, second, third)}
    assert results == {_seq_sum(a)}
    assert load_cached("other-key", cache_dir=tmp_path) is None


def test_corrupt_cache_is_a_miss(tmp_path):
    jit(SUM, tmp_path, "k")
    (obj_file,) = (tmp_path / "llvm").glob("*.o")
    obj_file.write_bytes(obj_file.read_bytes()[:100])
    assert load_cached("k", cache_dir=tmp_path) is None
    lib = jit(SUM, tmp_path, "k")  # recompiles and rewrites the entry
    assert not lib.from_cache
    assert load_cached("k", cache_dir=tmp_path) is not None


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE_DIR", str(tmp_path))
    compile_llvm_module(parse(SUM), cache_key="env-key")
    assert list((tmp_path / "llvm").glob("*.o"))
    assert load_cached("env-key") is not None


def test_function_keeps_library_alive():
    f = jit(SUM).get("sum", F64, [PTR, I64])  # library object dropped right away
    a = np.ones(10)
    assert f(ptr(a), a.size) == 10.0


def test_unsupported_op_is_named():
    mod = parse(
        """
        func.func @f(%a: memref<?xf64>) -> index {
          %c0 = arith.constant 0 : index
          %d = memref.dim %a, %c0 : memref<?xf64>
          return %d : index
        }
        """
    )
    with pytest.raises(LLVMLoweringError, match="memref.dim"):
        lower_to_llvm(mod)


def test_llvm_ir_text():
    text = llvm_ir_text(parse(SUM))
    assert "define double @sum(ptr" in text
    assert "getelementptr inbounds double" in text
