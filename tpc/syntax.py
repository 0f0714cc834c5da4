"""The .ham front end: a small AST with a source location on every node, and the checks on
source bytes. The Lark parser that builds the AST is tpc.parser, imported only to parse."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tpc.diagnostics import Loc, TpcError

# ------------------------------------------------------------------------------ AST


@dataclass
class Node:
    loc: Loc = field(repr=False, compare=False)


@dataclass
class Num(Node):
    value: float
    is_int: bool


@dataclass
class Name(Node):
    id: str


@dataclass
class BinOp(Node):
    op: str  # + - * / ^
    lhs: Node
    rhs: Node


@dataclass
class Neg(Node):
    operand: Node


@dataclass
class Call(Node):
    fn: str
    args: list[Node]


@dataclass
class Index(Node):
    array: str
    indices: list[Node]


@dataclass
class Reduction(Node):
    """sum(i: e), sum(i < j: e), sum(i != j: e), sum(i in a..b: e), or sum(e) (vars empty)."""

    vars: list[str]
    kind: str  # "all" | "index" | "lt" | "ne" | "range"
    body: Node
    lower: Node | None = None
    upper: Node | None = None


@dataclass
class Decl(Node):
    name: str


@dataclass
class ParamDecl(Decl):
    value: float


@dataclass
class ArrayDecl(Decl):
    shape: list[int | str]
    dim_locs: list[Loc]


@dataclass
class StateDecl(Node):
    q: ArrayDecl
    p: ArrayDecl


@dataclass
class LetDecl(Decl):
    expr: Node


@dataclass
class HDecl(Node):
    expr: Node


@dataclass
class ObserveDecl(Decl):
    """observe NAME = EXPR: computed at snapshots, saved by name."""

    expr: Node


@dataclass
class BoxDecl(Decl):
    lengths: list[float]  # one (cubic) or one per axis (orthorhombic)
    length_locs: list[Loc]


@dataclass
class Option(Node):
    """`name = value` after `cutoff` or `ewald`: a number or a bare word."""

    name: str
    value: float | str
    value_loc: Loc


@dataclass
class CutoffDecl(Decl):
    value: float
    options: list[Option]


@dataclass
class EwaldDecl(Node):
    options: list[Option]


@dataclass
class Setting(Decl):
    value: object  # float | int | str | list | Word
    value_loc: Loc


@dataclass(frozen=True)
class Word:
    """A bare identifier on the right of a simulate setting (`integrator = leapfrog`)."""

    text: str


@dataclass
class System(Node):
    name: str
    params: list[ParamDecl]
    inputs: list[ArrayDecl]
    states: list[StateDecl]
    lets: list[LetDecl]
    hamiltonians: list[HDecl]
    boxes: list[BoxDecl]
    cutoffs: list[CutoffDecl]
    ewalds: list[EwaldDecl]
    observes: list[ObserveDecl] = field(default_factory=list)


@dataclass
class Program:
    system: System
    settings: list[Setting]
    path: str
    source: str


# --------------------------------------------------------------------------- parsing


def parse(source: str, path: str = "<input>") -> Program:
    """The AST of `source`; errors are TpcErrors at their place in it (tpc.parser)."""
    from tpc.parser import parse as parse_source

    return parse_source(source, path)


def abbreviate(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-8:]} ({len(text)} characters)"


def loc_at(path: str, text: str, pos: int) -> Loc:
    """The location of character `pos`, counting lines the way the lexer does."""
    line_start = text.rfind("\n", 0, pos) + 1
    return Loc(path, text.count("\n", 0, pos) + 1, pos - line_start + 1, text)


# Tab, newline, carriage return and form feed are whitespace; any other control character
# means the file is not .ham text (a NUL is the usual sign of a binary file). A lone surrogate
# stands for a byte that is not UTF-8 (read_source decodes with "surrogateescape").
_BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\udc80-\udcff]")


def _check_characters(source: str, path: str) -> None:
    """The first character that cannot be in a .ham file, whichever kind it is."""
    m = _BAD_CHARACTER.search(source)
    if m is None:
        return
    c = m.group()
    shown = re.sub("[\ud800-\udfff]", "\ufffd", source)  # one for one: columns stay
    if "\udc80" <= c <= "\udcff":
        raise TpcError(f"invalid UTF-8 (byte 0x{ord(c) - 0xDC00:02X}); a .ham file must be UTF-8 "
                       "text", loc_at(path, shown, m.start()))
    raise TpcError(f"control character U+{ord(c):04X} in the source (a .ham file is text)",
                   loc_at(path, shown, m.start()))


MAX_SOURCE_BYTES = 16 << 20


def read_bytes(path: str | Path, what: str, limit: int, loc: Loc | None = None) -> bytes:
    """A regular file's bytes, at most `limit` of them; `what` names it in errors ("'f.ham'").
    A FIFO or a device would block or never end, so the type is checked before opening."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TpcError(f"cannot read {what}: not a regular file", loc)
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise TpcError(f"cannot read {what}: {e.strerror or e}", loc) from None
    if len(data) > limit:
        raise TpcError(f"cannot read {what}: larger than the limit of {limit >> 20} MiB",
                       loc)
    return data


def read_source(path: str | Path) -> str:
    """A .ham file's text; parse() reports its first byte that is not UTF-8 text."""
    return read_bytes(path, f"'{path}'", MAX_SOURCE_BYTES).decode("utf-8", "surrogateescape")


def decode_source(data: bytes, path: str, kind: str) -> str:
    """UTF-8 text, or an error at the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = data.decode("utf-8", errors="replace")
        loc = loc_at(path, shown, len(data[: e.start].decode("utf-8")))
        raise TpcError(f"invalid UTF-8 (byte 0x{data[e.start]:02X}); a {kind} file must be UTF-8 "
                       "text", loc) from None


def parse_file(path: str | Path) -> Program:
    return parse(read_source(path), str(path))
