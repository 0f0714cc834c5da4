"""Compiled builds on disk, so that a run from the compile cache starts without the compiler.

A build is the code, linked into a shared library (tpc.runtime.sharedlib), and beside it
what a run reads that the compiler would otherwise recompute from the source: the options
resolved against the simulate block, the SystemInfo, the parsed program (the simulate block's
settings and every source location an error in user input points at), the ABI table, and the
ham-symmetry answers that the run summary asks for (`flows`). A hit builds the Simulation from
these, so it imports neither xDSL nor llvmlite and parses nothing; what only the IR can answer
(remarks, GPU kernels, an ensemble's loop) regenerates the IR on first use.

The key is what `tpc.compile` was asked: tpc's version, the compiler's fingerprint, the
options as given and the source (the ingredients of Simulation.cache_key, with the options
before they are resolved: resolving them needs the parse that a hit skips), plus the host
(sharedlib.host_id) and llvmlite's version, which change the machine code. A build is also
recorded under its resolved options, which is what a request that spells every option out
(a resumed run, the float64 twin of a float32 fold) asks for.

The program is stored with the path it was parsed from; one source at another path is the
same build, and its program is parsed again there (Lark only, ~0.1 s) so that errors name the
file that was asked for. The record is a pickle: like the library next to it, it is code the
cache is trusted to hold. A torn or foreign record fails its checksum and is a miss.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tpc.runtime import sharedlib

_FORMAT = "tpc-build-1"
_MAGIC = b"TPCBLD1\0"


@dataclass
class Build:
    options: object  # tpc.compiler.Options, resolved against the simulate block
    info: object  # tpc.system_info.SystemInfo
    program: object  # tpc.syntax.Program
    abi: bytes  # the ABI table, JSON (tpc.passes.abi)
    # (parts of one flow, symmetry) -> whether their sum is proved invariant (ham-symmetry)
    flows: dict[tuple[tuple[str, ...], str], bool] = field(default_factory=dict)
    library_sha256: str = ""


def enabled() -> bool:
    """Whether builds are cached as shared libraries here (a linker and a known host)."""
    return sharedlib.linker() is not None


def request_key(version: str, fingerprint: str, options, source: str) -> str:
    text = f"{version}\n{fingerprint}\n{options!r}\n{source}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _paths(key: str) -> tuple[Path, Path]:
    import llvmlite  # its version only: the package itself, not LLVM

    ident = "\0".join((_FORMAT, llvmlite.__version__, sharedlib.host_id() or "", key))
    digest = hashlib.sha256(ident.encode()).hexdigest()
    root = sharedlib.default_cache_dir() / "builds"
    return root / f"{digest}.build", root / f"{digest}.so"


def load(key: str, path: str) -> tuple[Build, Path] | None:
    """The build stored under `key` and its library, or None on a miss. `path` is where the
    source was read from ("<source>" for text): the program is parsed again for another."""
    if sharedlib.host_id() is None:  # (not the linker: a hit does not link)
        return None
    record, library = _paths(key)
    try:
        blob = record.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 32
    payload = blob[head:]
    if not blob.startswith(_MAGIC) or hashlib.sha256(payload).digest() != blob[len(_MAGIC):head]:
        return None
    try:
        build = pickle.loads(payload)
    except Exception:  # a record of another layout: rebuild  # noqa: BLE001
        return None
    if not isinstance(build, Build) or sharedlib.digest(library) != build.library_sha256:
        return None
    if build.program.path != path:
        from tpc import syntax

        build.program = syntax.parse(build.program.source, path)
    return build, library


def store(keys: list[str], obj: bytes, build: Build) -> Path | None:
    """Link `obj` and record `build` beside it under each key (the request, and the options
    as resolved, which an explicit request such as a resumed run's asks for); the first key's
    library, or None when it could not be linked or written (the caller then loads the
    object as before)."""
    root = _paths(keys[0])[0].parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        linked = Path(tempfile.mkdtemp(dir=root, prefix=".link-")) / "code.so"
    except OSError as err:
        warnings.warn(f"tpc: could not write the build cache {root}: {err}", stacklevel=3)
        return None
    try:
        if not sharedlib.link(obj, linked):
            return None
        build.library_sha256 = sharedlib.digest(linked) or ""
        payload = pickle.dumps(build, protocol=pickle.HIGHEST_PROTOCOL)
        blob = _MAGIC + hashlib.sha256(payload).digest() + payload
        for key in dict.fromkeys(keys):
            record, library = _paths(key)
            # Through a name of this process's own: another may be storing the same build.
            _replace(library, lambda f: f.write(linked.read_bytes()), ".so")
            _replace(record, lambda f: f.write(blob), ".build")  # after: a record has its library
    except OSError as err:
        warnings.warn(f"tpc: could not write the build cache {root}: {err}", stacklevel=3)
        library = _paths(keys[0])[1]
        return library if library.is_file() else None
    finally:
        shutil.rmtree(linked.parent, ignore_errors=True)
    return _paths(keys[0])[1]


def _replace(path: Path, write, suffix: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o755 if suffix == ".so" else 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
