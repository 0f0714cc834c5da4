"""Native code from an `llvm`-dialect module: llvmlite MCJIT plus an object cache.

compile_llvm_module: xDSL llvm dialect -> llvmlite IR -> verify -> O3 (new pass
    manager, host CPU and features) -> object file -> (cache) -> MCJIT.
load_cached: the object file alone -> MCJIT, with no xDSL work at all.
emit_object: the same code as position-independent object code, which tpc links into a
    shared library (tpc.runtime.sharedlib) where a linker is present; then neither MCJIT nor
    this module is needed to load it again.

Floating point: no fast-math flags are produced anywhere, and the target
machine is created with LLVM's default options, under which fmul+fadd are
never contracted to FMA and nothing is reassociated. Compensated (Kahan) sums
therefore survive O3; tests/test_llvm_lowering.py checks it.

Cached objects are keyed by the caller's key together with everything that
changes the machine code (host CPU, its features, triple, llvmlite version and
this file's format version), so a cache shared between machines stays correct.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llvmlite
import llvmlite.binding as llvm
from llvmlite import ir
from tpc.runtime.sharedlib import default_cache_dir

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

# Bump when the object layout or the way it is produced changes.
_FORMAT_VERSION = "tpc-llvm-obj-2"
_MAGIC = b"TPCOBJ2\0"


@dataclass(frozen=True)
class _Host:
    triple: str
    cpu: str
    features: str


@cache
def _host() -> _Host:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return _Host(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
    )


def _target_machine(shared: bool = False) -> llvm.TargetMachine:
    """A fresh target machine. MCJIT takes ownership of the one it is given,
    so every engine gets its own and none is reused after its engine dies.
    `shared`: for an object linked into a shared library (position-independent, small code
    model) rather than loaded by MCJIT."""
    host = _host()
    target = llvm.Target.from_triple(host.triple)
    if shared:
        return target.create_target_machine(
            cpu=host.cpu, features=host.features, opt=3, reloc="pic", codemodel="default"
        )
    return target.create_target_machine(
        cpu=host.cpu, features=host.features, opt=3, codemodel="jitdefault", jit=True
    )


# --------------------------------------------------------------------------- IR


def _ensure_llvm_dialect(module_op: ModuleOp) -> ModuleOp:
    """Accept a module still in func/arith/...: lower a copy of it."""
    if all(op is module_op or op.name.startswith("llvm.") for op in module_op.walk()):
        return module_op
    from tpc.passes.llvm_pipeline import lower_to_llvm

    lowered = module_op.clone()
    lower_to_llvm(lowered, target="cpu")
    return lowered


def to_llvmlite_ir(module_op: ModuleOp) -> ir.Module:
    """llvmlite IR for an llvm-dialect module (a non-llvm module is lowered first).

    xDSL's translator ignores llvm.func linkage, so it is applied here: private
    helpers become internal (inlinable, droppable), the rest stay external.
    """
    # xDSL's translator is only needed to compile; a cache hit never imports it.
    from xdsl.backend.llvm.convert import convert_module
    from xdsl.dialects import llvm as llvm_dialect

    module_op = _ensure_llvm_dialect(module_op)
    irmod = convert_module(module_op, fallback_target_triple=_host().triple)
    for op in module_op.ops:
        if not isinstance(op, llvm_dialect.FuncOp) or not op.body.blocks:
            continue
        fn = irmod.get_global(op.sym_name.data)
        linkage = op.linkage.linkage.data
        if linkage != "external":
            fn.linkage = linkage
        # Nothing we generate can unwind; saying so lets LLVM drop EH paths.
        fn.attributes.add("nounwind")
        if "tpc.noalias" in op.attributes:
            # The generator guarantees distinct buffers: loads may then stay in registers
            # across stores to other buffers, and loops vectorize without runtime checks.
            for arg in fn.args:
                if isinstance(arg.type, ir.PointerType):
                    arg.add_attribute("noalias")
    return irmod


def llvm_ir_text(module_op: ModuleOp, *, optimize: bool = False) -> str:
    """Textual LLVM IR (for `--emit=llvm`), verified and printed by LLVM itself;
    `optimize=True` gives the O3 IR that would be compiled."""
    tm = _target_machine()
    ref = _parse_and_verify(to_llvmlite_ir(module_op), tm)
    if optimize:
        _optimize(ref, tm, 3)
    return str(ref)


def _parse_and_verify(irmod: ir.Module, tm: llvm.TargetMachine) -> llvm.ModuleRef:
    # parse_assembly/verify raise RuntimeError; handing an unverified module to
    # the optimiser or code generator can abort the whole process instead.
    ref = llvm.parse_assembly(str(irmod))
    ref.triple = _host().triple
    ref.data_layout = str(tm.target_data)
    ref.verify()
    return ref


def _optimize(ref: llvm.ModuleRef, tm: llvm.TargetMachine, level: int) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pto.loop_unrolling = level >= 2
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(ref, pb)


# ----------------------------------------------------------------------- cache


def _cache_path(cache_key: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    host = _host()
    ident = "\0".join(
        (_FORMAT_VERSION, llvmlite.__version__, host.triple, host.cpu, host.features, cache_key)
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "llvm" / f"{digest}.o"


def _write_cache(path: Path, obj: bytes, meta: bytes = b"") -> None:
    # Header = magic + sha256(payload) so a torn or foreign file is rejected
    # instead of being handed to the object loader. The payload is the length of the
    # metadata (the module's ABI table), the metadata, then the object code.
    payload = len(meta).to_bytes(8, "little") + meta + obj
    blob = _MAGIC + hashlib.sha256(payload).digest() + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".o")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except OSError as err:
        warnings.warn(f"tpc: could not write object cache {path}: {err}", stacklevel=3)


def _read_cache(path: Path) -> tuple[bytes, bytes] | None:
    """(object code, metadata), or None for a missing, torn or foreign file."""
    try:
        if not path.is_file():
            return None
        blob = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 32
    if len(blob) < head + 8 or not blob.startswith(_MAGIC):
        return None
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(_MAGIC) : head]:
        return None
    n = int.from_bytes(payload[:8], "little")
    return payload[8 + n:], payload[8 : 8 + n]


# --------------------------------------------------------------------- library


class CompiledLibrary:
    """Native code loaded into an MCJIT engine; functions are fetched with `get`.

    The engine and its target machine live exactly as long as this object, and
    every ctypes function from `get` keeps this object alive.
    """

    def __init__(self, obj: bytes, *, from_cache: bool, optimized_ir: str | None = None,
                 meta: bytes = b""):
        tm = _target_machine()
        # MCJIT needs a module to start from; the code comes from the object.
        seed = llvm.parse_assembly("")
        seed.triple = _host().triple
        seed.data_layout = str(tm.target_data)
        self._engine = llvm.create_mcjit_compiler(seed, tm)
        self._tm = tm  # owned by the engine now; kept only for lifetime clarity
        self._objref = llvm.ObjectFileRef.from_data(obj)
        self._engine.add_object_file(self._objref)
        self._engine.finalize_object()
        self.object_code = obj
        self.meta = meta  # what the caller stored with the code (tpc: the ABI table)
        self.from_cache = from_cache
        self.optimized_ir = optimized_ir

    def address(self, name: str) -> int:
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function '{name}' in compiled library")
        return addr

    def get(self, name: str, restype: Any, argtypes: list[Any] | tuple[Any, ...]) -> Any:
        """A ctypes callable for `name`; memrefs are `ctypes.c_void_p`/`POINTER(...)`,
        index is `ctypes.c_int64`."""
        proto = ctypes.CFUNCTYPE(restype, *argtypes)
        fn = proto(self.address(name))
        fn._tpc_library = self  # the code must outlive the function pointer
        return fn


def load_cached(
    cache_key: str, *, cache_dir: str | os.PathLike[str] | None = None
) -> CompiledLibrary | None:
    """The library stored under `cache_key`, or None on a miss (no lowering done)."""
    hit = _read_cache(_cache_path(cache_key, cache_dir))
    if hit is None:
        return None
    obj, meta = hit
    return CompiledLibrary(obj, from_cache=True, meta=meta)


def compile_llvm_module(
    module_op: ModuleOp,
    *,
    cache_key: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    opt_level: int = 3,
    meta: bytes = b"",
) -> CompiledLibrary:
    """Compile an llvm-dialect module (a func-level one is lowered on a copy).

    With a `cache_key`, a cached object is used when present and the new object
    is stored otherwise, with `meta` beside it. The key must identify the source; host details are
    added here.
    """
    if cache_key is not None:
        hit = load_cached(cache_key, cache_dir=cache_dir)
        if hit is not None:
            return hit
    obj, optimized_ir = emit_object(module_op, opt_level=opt_level)
    if cache_key is not None:
        _write_cache(_cache_path(cache_key, cache_dir), obj, meta)
    return CompiledLibrary(obj, from_cache=False, optimized_ir=optimized_ir, meta=meta)


def emit_object(module_op: ModuleOp, *, opt_level: int = 3,
                shared: bool = False) -> tuple[bytes, str]:
    """(object code, the optimized IR it was generated from) of an llvm-dialect module;
    `shared`: position-independent code for a shared library (tpc.runtime.sharedlib)."""
    tm = _target_machine(shared)
    ref = _parse_and_verify(to_llvmlite_ir(module_op), tm)
    if opt_level > 0:
        _optimize(ref, tm, opt_level)
        ref.verify()
    optimized_ir = str(ref)  # before codegen, which rewrites the module in place
    return tm.emit_object(ref), optimized_ir
