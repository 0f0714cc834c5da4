"""The run configuration: the `simulate { ... }` block plus command-line overrides.

Every value a simulation needs is checked here, once, before any code runs: the time step, the
step counts, the params (`--set NAME=VALUE`), and the initial arrays (inline lists or an `init`
file), whose shapes bind the size symbols of the system (`N`). Errors in the .ham file point at
the offending key or value; errors in command-line values have no source location.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tpc.diagnostics import Loc, TpcError
from tpc.limits import MAX_LIST_NESTING, MAX_STEPS
from tpc.syntax import Program, Setting, Word, abbreviate, decode_source, loc_at, read_bytes
from tpc.system_info import SystemInfo, as_info

if TYPE_CHECKING:
    from tpc.dialects import ham

# integrator, precision and kahan choose the generated code: the compiler reads them
# (tpc.compiler.resolve_options); units give the energy its constants (tpc.units, read by
# tpc.irgen); the others are read here.
RUN_KEYS = ("integrator", "dt", "steps", "save_every", "init", "precision", "kahan", "units",
            "project")


@dataclass
class RunConfig:
    integrator: str | None  # the simulate block's integrator word, if any (validated elsewhere)
    dt: float
    steps: int
    save_every: int
    params: dict[str, float]  # every param of the system: its declared default, or the override
    q0: np.ndarray  # float64, the state's shape with the sizes bound
    p0: np.ndarray
    inputs: dict[str, np.ndarray]
    sizes: dict[str, int]


# ------------------------------------------------------------------------------ arrays


def _shape_text(shape: Iterable[int | str]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _index_text(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else "(" + ", ".join(map(str, index)) + ")"


def _as_float_array(name: str, value: object, loc: Loc | None) -> np.ndarray:
    if isinstance(value, (str, Word)) or (
        isinstance(value, list) and _contains_text(value)
    ):
        raise TpcError(f"initial value of '{name}' must be numbers, got {_show(value)}", loc)
    bad = _non_number(value)
    if bad is not None:
        raise TpcError(f"initial value of '{name}' must be numbers, got {bad}", loc)
    try:
        arr = np.array(value, dtype=np.float64, order="C")
    except (ValueError, TypeError):
        raise TpcError(
            f"initial value of '{name}' is not a rectangular array of numbers", loc
        ) from None
    return np.ascontiguousarray(arr)


def _contains_text(value: list) -> bool:
    return any(
        isinstance(v, (str, Word)) or (isinstance(v, list) and _contains_text(v)) for v in value
    )


def _non_number(value: object) -> str | None:
    """What in `value` is not a real number (booleans, complex, dates, objects, too large for a
    float), or None. numpy would silently turn most of these into floats."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "iuf":
                return f"an array of {v.dtype}"
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
            return f"a value of type {type(v).__name__} ({abbreviate(repr(v))})"
        elif isinstance(v, numbers.Integral) and _overflows(v):
            return "a number too large for a 64-bit float"
    return None


def _overflows(v: numbers.Integral) -> bool:
    try:
        float(v)
    except OverflowError:
        return True
    return False


def _show(value: object) -> str:
    if isinstance(value, Word):
        return value.text
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def bind_arrays(
    system: SystemInfo | ham.SystemOp,
    q0: object,
    p0: object,
    inputs: Mapping[str, object] | None = None,
    *,
    locs: Mapping[str, Loc] | None = None,
    missing_loc: Loc | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """Check the initial arrays against the system's declarations and bind its size symbols.

    Returns contiguous float64 copies of q0, p0 and the inputs, and the sizes (`{"N": 16}`).
    `locs` gives, for each array name, where its value came from (for error messages);
    `missing_loc` is where to report a missing array.
    """
    locs = locs or {}
    inputs = dict(inputs or {})
    info = as_info(system)
    q_name, p_name = info.q, info.p
    declared: list[tuple[str, tuple[int | str, ...], object]] = [
        (q_name, info.shape, q0),
        (p_name, info.shape, p0),
    ]
    input_names = []
    for name, shape in info.inputs.items():
        input_names.append(name)
        declared.append((name, shape, inputs.pop(name, None)))
    for extra in inputs:
        known = ", ".join(input_names) or "none"
        raise TpcError(f"'{extra}' is not an input of the system (inputs: {known})",
                       locs.get(extra))

    sizes: dict[str, int] = {}
    size_from: dict[str, str] = {}
    out: dict[str, np.ndarray] = {}
    for name, shape, value in declared:
        loc = locs.get(name)
        if value is None:
            what = "input" if name in input_names else "state array"
            raise TpcError(
                f"no initial value for {what} '{name}': give '{name} = [...]' in the simulate "
                "block or an init file",
                missing_loc,
            )
        arr = _as_float_array(name, value, loc)
        if arr.ndim != len(shape):
            raise TpcError(
                f"'{name}' needs shape {_shape_text(shape)}, got {_shape_text(arr.shape)}", loc
            )
        for want, got in zip(shape, arr.shape):
            if isinstance(want, int):
                if want != got:
                    raise TpcError(
                        f"'{name}' needs shape {_shape_text(shape)}, got {_shape_text(arr.shape)}",
                        loc,
                    )
            elif want in sizes:
                if sizes[want] != got:
                    raise TpcError(
                        f"{want} is {sizes[want]} from '{size_from[want]}' but '{name}' has {got}",
                        loc,
                    )
            else:
                if got < 1:
                    raise TpcError(f"{want} must be at least 1, but '{name}' has {got}", loc)
                sizes[want], size_from[want] = int(got), name
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            raise TpcError(
                f"initial value of '{name}' is not finite at index {_index_text(index)}", loc
            )
        out[name] = arr
    for size, least in info.min_sizes.items():
        if sizes.get(size, least) < least:
            raise TpcError(
                f"the energy indexes with offsets that need {size} >= {least}, "
                f"but {size} is {sizes[size]} (from '{size_from[size]}')",
                missing_loc,
            )
    q, p = out.pop(q_name), out.pop(p_name)
    return q, p, out, sizes


# --------------------------------------------------------------------------- init files


MAX_INIT_BYTES = 1 << 30
# The keys by which tpc's own .npz output is recognized and read back (see tpc.runner).
OUTPUT_MARK = "tpc_version"
OUTPUT_INPUT_PREFIX = "input_"
OUTPUT_STATE_NAMES = "state_names"  # [q's name, p's name]: the keys the states are under


@dataclass
class InitFile:
    arrays: dict[str, object]
    locs: dict[str, Loc]  # where each array is, for errors about its value
    where: Loc  # the file itself, for errors with no finer place


def read_init_file(path: Path, shown: str, loc: Loc | None) -> InitFile:
    """The arrays of a .json object or .npz archive, by name. `loc` is where the file is named
    (None on the command line); errors in its content point into the file where they can."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npz"):
        raise TpcError(f"init file '{shown}' must be a .json or .npz file", loc)
    data = read_bytes(path, f"init file '{shown}'", MAX_INIT_BYTES, loc)
    where = loc or Loc(str(path), 1, 1)
    if suffix == ".json":
        return _read_json(data, str(path), shown)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise TpcError(f"cannot read init file '{shown}': not an .npz (zip) archive", where)
    return InitFile(_read_npz(data, shown, where), {}, where)


def _read_npz(data: bytes, shown: str, where: Loc) -> dict[str, object]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            unpacked = sum(info.file_size for info in zf.infolist())
            if unpacked > MAX_INIT_BYTES:
                raise TpcError(f"cannot read init file '{shown}': it unpacks to {unpacked} bytes, "
                               f"more than the limit of {MAX_INIT_BYTES >> 20} MiB", where)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    # A damaged archive fails in zipfile, zlib, the .npy header parser or the array reader, each
    # with its own exception types.
    except (OSError, EOFError, ValueError, KeyError, NotImplementedError, RuntimeError,
            zipfile.BadZipFile, zlib.error, struct.error, UnicodeDecodeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TpcError(f"cannot read init file '{shown}': unreadable .npz archive ({reason})",
                       where) from None


# A JSON token as the pre-scan needs it. A string stops at the end of its line (JSON strings hold
# no raw newlines), so an unterminated one costs one line, not the rest of the file.
_JSON_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|"|[\[\]{}]|-?[0-9][0-9.eE+-]*|true|false|null')


def _read_json(data: bytes, file: str, shown: str) -> InitFile:
    text = decode_source(data, file, ".json")
    locs = _scan_json(text, file, shown)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise TpcError(f"cannot parse init file '{shown}': {e.msg}",
                       Loc(file, e.lineno, e.colno, text)) from None
    if not isinstance(obj, dict):
        start = len(text) - len(text.lstrip())
        raise TpcError(f"cannot use init file '{shown}': expected a JSON object of arrays, "
                       f"got a {type(obj).__name__}", loc_at(file, text, start))
    return InitFile(obj, locs, Loc(file, 1, 1, text))


def _scan_json(text: str, file: str, shown: str) -> dict[str, Loc]:
    """Before json.loads (whose C parser recurses once per nesting level): refuse deep nesting,
    numbers beyond a float and values that are not numbers, each at its place in the file.
    Returns where the value of each top-level key starts."""
    depth, key, locs = 0, None, {}
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        if tok == '"':
            break  # an unterminated string: json.loads reports it
        if tok in "[{":
            depth += 1
            if depth > MAX_LIST_NESTING + 1:
                raise TpcError(f"init file '{shown}': arrays nested deeper than "
                               f"{MAX_LIST_NESTING} levels", loc_at(file, text, m.start()))
        elif tok in "]}":
            depth -= 1
        elif tok.startswith('"') and depth == 1 and text[m.end():].lstrip().startswith(":"):
            key = tok[1:-1]
            continue
        elif depth >= 1:
            bad = _json_non_number(tok)
            if bad:
                raise TpcError(f"init file '{shown}': {bad}", loc_at(file, text, m.start()))
        if key is not None:
            locs[key] = loc_at(file, text, m.start())
            key = None
    return locs


def _json_non_number(tok: str) -> str | None:
    if tok.startswith('"'):
        return f"expected a number, got the string {abbreviate(tok)}"
    if tok in ("true", "false", "null"):
        return f"expected a number, got {tok}"
    try:
        value = float(tok)
    except ValueError:
        return None  # not JSON: json.loads reports it
    if math.isinf(value):
        return f"the number {abbreviate(tok)} is too large for a 64-bit float"
    return None


def output_state_keys(data: dict[str, object]) -> tuple[str, str]:
    """The keys of q and p in a `tpc run` output: the state's names in the source, as its
    `state_names` records them (files from before it have `q` and `p`)."""
    names = data.get(OUTPUT_STATE_NAMES)
    if isinstance(names, np.ndarray) and names.shape == (2,):
        return str(names[0]), str(names[1])
    return "q", "p"


def from_tpc_output(data: dict[str, object], q_name: str, p_name: str) -> dict[str, object]:
    """A trajectory written by `tpc run` continues from its last snapshot, with its inputs."""
    if OUTPUT_MARK not in data:
        return data
    out = {k[len(OUTPUT_INPUT_PREFIX):]: v for k, v in data.items()
           if k.startswith(OUTPUT_INPUT_PREFIX)}
    for key, name in zip(output_state_keys(data), (q_name, p_name)):
        rows = data.get(key)
        if isinstance(rows, np.ndarray) and rows.ndim >= 1 and len(rows):
            out[name] = rows[-1]
    return out


# ------------------------------------------------------------------------- the config


def _number(setting: Setting) -> float:
    v = setting.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TpcError(f"{setting.name} must be a number, got {_show(v)}", setting.value_loc)
    return float(v)


def _integer(setting: Setting) -> int:
    v = _number(setting)
    if not (math.isfinite(v) and v == int(v)):
        raise TpcError(f"{setting.name} must be an integer, got {_show(setting.value)}",
                       setting.value_loc)
    return int(v)


def _parse_sets(sets: Iterable[str], params: dict[str, float]) -> None:
    for item in sets:
        name, eq, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not eq or not name:
            raise TpcError(f"--set expects NAME=VALUE, got '{item}'")
        if name not in params:
            known = ", ".join(params) or "none"
            raise TpcError(f"--set {item}: the system has no param '{name}' (params: {known})")
        try:
            value = float(text)
        except ValueError:
            raise TpcError(f"--set {item}: '{text}' is not a number") from None
        if not math.isfinite(value):
            raise TpcError(f"--set {item}: the value must be finite")
        params[name] = value


def _run_value(key: str, flag, settings: dict[str, Setting], parse, ok, need: str,
               flag_need: str, *, missing: TpcError | None = None, default=None):
    """A run setting: the command-line flag, else the simulate block's value, else the default
    (or `missing` when there is none); each source reports a bad value in its own terms."""
    if flag is not None:
        if not ok(flag):
            shown = f"{flag:g}" if isinstance(flag, float) else flag
            raise TpcError(f"--{key.replace('_', '-')} must be {flag_need}, got {shown}")
        return float(flag) if parse is _number else int(flag)
    if key in settings:
        setting = settings[key]
        value = parse(setting)
        if not ok(value):
            raise TpcError(f"{key} must be {need}, got {_show(setting.value)}", setting.value_loc)
        return value
    if missing is not None:
        raise missing
    return default


def load_run_config(
    program: Program,
    system: SystemInfo | ham.SystemOp,
    *,
    steps: int | None = None,
    dt: float | None = None,
    save_every: int | None = None,
    sets: Iterable[str] = (),
    init: str | None = None,
) -> RunConfig:
    """The simulate block of `program`, with the command-line values taking precedence."""
    info = as_info(system)
    q_name, p_name = info.q, info.p
    input_names = list(info.inputs)
    array_names = [q_name, p_name, *input_names]
    sys_loc = program.system.loc

    settings: dict[str, Setting] = {}
    for s in program.settings:
        if s.name not in RUN_KEYS and s.name not in array_names:
            known = ", ".join([*RUN_KEYS, *array_names])
            raise TpcError(f"unknown simulate setting '{s.name}' (known: {known})", s.loc)
        settings[s.name] = s  # each at most once: the parser refuses a second

    # integrator: only carried here; its name is checked by the compiler
    integrator = None
    if "integrator" in settings:
        v = settings["integrator"].value
        integrator = v.text if isinstance(v, Word) else str(v)

    def missing(what: str, key: str, flag: str) -> TpcError:
        return TpcError(
            f"system '{program.system.name}' has no {what}: add '{key} = ...' to the simulate "
            f"block or pass {flag}",
            sys_loc,
        )

    dt_value = _run_value(
        "dt", dt, settings, _number, lambda v: math.isfinite(v) and v > 0, "a finite number > 0",
        "> 0", missing=missing("time step", "dt", "--dt"),
    )
    steps_need = f"between 0 and {MAX_STEPS:,}"
    steps_value = _run_value(
        "steps", steps, settings, _integer, lambda v: 0 <= v <= MAX_STEPS, steps_need,
        steps_need, missing=missing("step count", "steps", "--steps"),
    )
    save_need = f"between 1 and {MAX_STEPS:,}"
    save_value = _run_value(
        "save_every", save_every, settings, _integer, lambda v: 1 <= v <= MAX_STEPS, save_need,
        save_need, default=max(1, steps_value // 1000),
    )

    # params
    params = dict(info.params)
    _parse_sets(sets, params)

    # initial arrays: inline values, an init file from the block, or one from the command line
    values: dict[str, object] = {}
    locs: dict[str, Loc] = {}
    for name in array_names:
        if name in settings:
            values[name] = settings[name].value
            locs[name] = settings[name].value_loc
    if init is not None:
        # the command line's file replaces the block's init and any inline values it names
        data = read_init_file(Path(init), init, None)
        _take_init(data, array_names, init, None, values, locs, override=True)
    elif "init" in settings:
        s = settings["init"]
        if not isinstance(s.value, str):
            raise TpcError(
                f'init must be a file name in quotes (init = "state.json"), got {_show(s.value)}',
                s.value_loc,
            )
        path = Path(program.path).parent / s.value
        data = read_init_file(path, s.value, s.value_loc)
        _take_init(data, array_names, s.value, s.value_loc, values, locs, override=False)

    inputs = {n: values[n] for n in input_names if n in values}
    q0, p0, inputs_out, sizes = bind_arrays(
        info, values.get(q_name), values.get(p_name), inputs, locs=locs, missing_loc=sys_loc
    )
    return RunConfig(integrator, dt_value, steps_value, save_value, params, q0, p0, inputs_out,
                     sizes)


def _take_init(
    init: InitFile,
    names: list[str],
    shown: str,
    loc: Loc | None,
    values: dict[str, object],
    locs: dict[str, Loc],
    *,
    override: bool,
) -> None:
    """Merge the init file's arrays into `values`. `loc` is where the file is named in the .ham
    (errors point there), None for --init (they point into the file)."""
    for key, value in from_tpc_output(init.arrays, names[0], names[1]).items():
        where = loc or init.locs.get(key, init.where)
        if key not in names:
            raise TpcError(
                f"init file '{shown}' has an array '{key}' that the system does not declare "
                f"(expected {', '.join(names)})",
                where,
            )
        if key in values and not override:
            raise TpcError(
                f"'{key}' is given both inline (at {locs[key]}) and in init file '{shown}'", where
            )
        values[key] = value
        locs[key] = where
