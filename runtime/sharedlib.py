"""Native code as a shared library: an object file linked once, then loaded with ctypes.

Loading through MCJIT needs llvmlite's binding, which loads LLVM itself (about 60 ms) and
builds an engine per module; a shared library is one dlopen. So a compiled module is linked
by the system's C compiler driver (`cc -shared`, which knows where libgcc and libm are) into
a library kept in the compile cache. Without a linker, `linker()` is None and callers load
objects through MCJIT as before.

The object must be position-independent code in the small code model (jit.emit_object with
shared=True), which a linker can place anywhere; the objects MCJIT loads are not.

`host_id` names the machine code's target without asking LLVM: the CPU's identity and feature
flags as the kernel reports them, which change whenever LLVM's host CPU name or features would.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

# the /proc/cpuinfo fields that determine what LLVM's host detection chooses
_CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags",
               "cpu implementer", "cpu architecture", "cpu variant", "cpu part", "features")


def default_cache_dir() -> Path:
    env = os.environ.get("TPC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tpc"


@cache
def host_id() -> str | None:
    """The CPU's identity and features (Linux: the first processor of /proc/cpuinfo), or None
    where they cannot be read cheaply (then no shared library is used)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            fields = []
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                if key.strip().lower() in _CPU_FIELDS:
                    fields.append(f"{key.strip().lower()}={value.strip()}")
    except OSError:
        return None
    if not fields:
        return None
    return f"{os.uname().sysname}\0{os.uname().machine}\0" + "\0".join(fields)


@cache
def linker() -> str | None:
    """The C compiler driver that links shared libraries ($CC, else cc, gcc or clang)."""
    if os.name != "posix" or host_id() is None:
        return None
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


def link(obj: bytes, path: Path) -> bool:
    """Link the object code into the shared library `path` (replaced atomically, so a reader
    sees the old library or the new one); False when linking fails."""
    import subprocess  # only to build: a load never links

    cc = linker()
    if cc is None:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".link-") as tmp:
            o, so = Path(tmp) / "code.o", Path(tmp) / "code.so"
            o.write_bytes(obj)
            done = subprocess.run([cc, "-shared", "-o", str(so), str(o), "-lm"],
                                  capture_output=True, timeout=120)
            if done.returncode != 0 or not so.is_file():
                return False
            os.replace(so, path)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class SharedLibrary:
    """A linked module loaded with ctypes; the same interface as jit.CompiledLibrary (`get`,
    `address`, `meta`). Every function from `get` keeps the library loaded."""

    def __init__(self, path: Path, *, meta: bytes = b"", from_cache: bool = True):
        self.path = path
        self._dll = ctypes.CDLL(str(path))
        self.meta = meta  # what the caller stored with the code (tpc: the ABI table)
        self.from_cache = from_cache
        self.optimized_ir = None

    def address(self, name: str) -> int:
        try:
            fn = getattr(self._dll, name)
        except AttributeError:
            raise KeyError(f"no function '{name}' in compiled library") from None
        return ctypes.cast(fn, ctypes.c_void_p).value

    def get(self, name: str, restype: Any, argtypes: list[Any] | tuple[Any, ...]) -> Any:
        proto = ctypes.CFUNCTYPE(restype, *argtypes)
        fn = proto(self.address(name))
        fn._tpc_library = self  # the code must outlive the function pointer
        return fn
