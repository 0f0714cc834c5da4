"""Many calls of one compiled function in a native loop, spread over threads.

An ensemble runs the same compiled `run` once per member with that member's buffers. Calling
it from Python once per member costs a few microseconds of argument conversion per call, under
the GIL, which both dominates short member runs and serializes the threads. Instead the caller
fills an argument table (one row per member, one 64-bit word per argument: an address, an
index, or the bits of a real) and one call of a tiny generated loop makes every call of its
rows natively. ctypes releases the GIL for the length of that call, so the rows split into
contiguous slices run in parallel on native threads. The loop is generic: it is built from the
function's argument kinds (the ABI roles), so it never depends on what the function computes.
"""

from __future__ import annotations

import ctypes
import threading
from functools import cache

import numpy as np
from llvmlite import ir

# one argument's kind in a table row: an address, an int64, a float64, a float32
KINDS = ("ptr", "i64", "f64", "f32")


def arg_kinds(native, name: str) -> tuple[str, ...]:
    """The kinds of `name`'s arguments, in call order (the env role expanded)."""
    out: list[str] = []
    real = "f32" if native.abi["precision"] == "f32" else "f64"
    for role in native.roles(name):
        if role == "env":
            out += ["ptr"] * (3 + len(native.abi["inputs"])) + ["i64"] * len(native.abi["sizes"])
        elif role.startswith("real:"):
            out.append(real)
        elif role.startswith("index:"):
            out.append("i64")
        else:
            out.append("ptr")
    return tuple(out)


def word(value: float, kind: str) -> np.uint64:
    """The 64-bit table word of a real argument (the loop reinterprets it)."""
    if kind == "f32":
        return np.uint64(np.float32(value).view(np.uint32))
    return np.float64(value).view(np.uint64)


def result_kind(native, name: str) -> str | None:
    """The kind of `name`'s result (None: void); a table row then ends with the address the
    result is stored to."""
    result = native.abi["functions"][name]["result"]
    if result is None:
        return None
    return "f64" if result == "f64" or native.abi["precision"] == "f64" else "f32"


@cache
def _loop(kinds: tuple[str, ...], result: str | None = None):
    """void loop(i64 fn, i64 *table, i64 rows): fn(row...) for each row of the table (with a
    result: stored to the address in the row's last word)."""
    from tpc.runtime import jit

    i64, i32 = ir.IntType(64), ir.IntType(32)
    types = {"ptr": ir.IntType(8).as_pointer(), "i64": i64, "f64": ir.DoubleType(),
             "f32": ir.FloatType()}
    callee = ir.FunctionType(types[result] if result else ir.VoidType(), [types[k] for k in kinds])
    width = len(kinds) + (1 if result else 0)
    module = ir.Module(name="tpc_members")
    loop = ir.Function(module, ir.FunctionType(ir.VoidType(), [i64, i64.as_pointer(), i64]),
                       "members")
    fn_addr, table, rows = loop.args
    entry, body, done = (loop.append_basic_block(n) for n in ("entry", "body", "done"))
    b = ir.IRBuilder(entry)
    fn = b.inttoptr(fn_addr, callee.as_pointer())
    b.cbranch(b.icmp_signed(">", rows, i64(0)), body, done)
    b = ir.IRBuilder(body)
    row = b.phi(i64)
    row.add_incoming(i64(0), entry)
    base = b.mul(row, i64(width))
    args = []
    for j, kind in enumerate(kinds):
        w = b.load(b.gep(table, [b.add(base, i64(j))]))
        if kind == "ptr":
            w = b.inttoptr(w, types["ptr"])
        elif kind == "f64":
            w = b.bitcast(w, types["f64"])
        elif kind == "f32":
            w = b.bitcast(b.trunc(w, i32), types["f32"])
        args.append(w)
    value = b.call(fn, args)
    if result:
        where = b.load(b.gep(table, [b.add(base, i64(len(kinds)))]))
        b.store(value, b.inttoptr(where, types[result].as_pointer()))
    nxt = b.add(row, i64(1))
    row.add_incoming(nxt, body)
    b.cbranch(b.icmp_signed("<", nxt, rows), body, done)
    ir.IRBuilder(done).ret_void()
    tm = jit._target_machine()
    ref = jit._parse_and_verify(module, tm)
    lib = jit.CompiledLibrary(tm.emit_object(ref), from_cache=False)
    return lib.get("members", None, [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int64])


def call_rows(native, name: str, table: np.ndarray, threads: int = 1) -> None:
    """Call `name` once per row of `table` (uint64, rows x arguments, plus the result's
    address for a function with a result), the rows split into `threads` contiguous slices
    run concurrently. Rows must not share output buffers."""
    kinds, result = arg_kinds(native, name), result_kind(native, name)
    width = len(kinds) + (1 if result else 0)
    table = np.ascontiguousarray(table, dtype=np.uint64)
    if table.ndim != 2 or table.shape[1] != width:
        raise ValueError(f"'{name}' takes {width} table words; the table has shape "
                         f"{table.shape}")
    loop = _loop(kinds, result)
    addr = ctypes.cast(native._ctypes(name), ctypes.c_void_p).value
    rows = len(table)
    threads = max(1, min(threads, rows))
    cuts = np.linspace(0, rows, threads + 1).astype(int)
    row_bytes = table.strides[0]

    def run(lo: int, hi: int) -> None:
        loop(addr, table.ctypes.data + lo * row_bytes, hi - lo)

    if threads == 1:
        run(0, rows)
        return
    workers = [threading.Thread(target=run, args=(int(lo), int(hi)))
               for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
