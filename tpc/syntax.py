"""The .ham front end: Lark grammar -> a small AST with a source location on every node."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import lark

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
class BoxDecl(Decl):
    value: float


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


@dataclass
class Program:
    system: System
    settings: list[Setting]
    path: str
    source: str


# --------------------------------------------------------------------------- parsing

_GRAMMAR_PATH = Path(__file__).parent / "grammar.lark"
_PARSER: lark.Lark | None = None


def _parser() -> lark.Lark:
    """The LALR parser, built on first use; lark caches its tables (keyed by the grammar)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = lark.Lark(_GRAMMAR_PATH.read_text(), parser="lalr", propagate_positions=True,
                            maybe_placeholders=False, cache=True)
    return _PARSER

_TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "NAME": "a name",
    "NUMBER": "a number", "INT": "an integer", "STRING": "a string", "PLUS": "'+'",
    "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "COMPARE": "'<' or '!='",
    "$END": "end of file",
}


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(t, repr(t.lower()) if t.isupper() else t) for t in expected})
    if len(words) > 6:
        return ""
    return " (expected " + ", ".join(words) + ")"


class _Builder(lark.Transformer):
    def __init__(self, path: str, source: str):
        super().__init__()
        self.path, self.source = path, source

    def loc(self, meta_or_token) -> Loc:
        return Loc(self.path, meta_or_token.line, meta_or_token.column, self.source)

    # numbers -------------------------------------------------------------
    def _number(self, tok: lark.Token) -> Num:
        text = str(tok).replace("_", "")
        is_int = text.isdigit()
        return Num(self.loc(tok), float(int(text)) if is_int else float(text), is_int)

    @lark.v_args(meta=True)
    def number(self, meta, children):
        return self._number(children[0])

    def pos_number(self, children):
        return self._number(children[0])

    @lark.v_args(meta=True)
    def neg_number(self, meta, children):
        n = self._number(children[0])
        return Num(self.loc(meta), -n.value, n.is_int)  # the location of the '-' sign

    # expressions ---------------------------------------------------------
    @lark.v_args(meta=True)
    def name(self, meta, children):
        return Name(self.loc(children[0]), str(children[0]))

    def _bin(op):  # noqa: N805 - a factory of transformer methods
        @lark.v_args(meta=True)
        def method(self, meta, children):
            lhs, rhs = children
            return BinOp(self.loc(meta), op, lhs, rhs)

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    @lark.v_args(meta=True)
    def neg(self, meta, children):
        return Neg(self.loc(meta), children[0])

    @lark.v_args(meta=True)
    def call(self, meta, children):
        fn, *args = children
        return Call(self.loc(fn), str(fn), [a for a in args if a is not None])

    @lark.v_args(meta=True)
    def index(self, meta, children):
        arr, *idx = children
        return Index(self.loc(arr), str(arr), idx)

    @lark.v_args(meta=True)
    def pair_sum(self, meta, children):
        i, cmp, j, body = children
        return Reduction(self.loc(meta), [str(i), str(j)], "lt" if cmp == "<" else "ne", body)

    @lark.v_args(meta=True)
    def index_sum(self, meta, children):
        i, body = children
        return Reduction(self.loc(meta), [str(i)], "index", body)

    @lark.v_args(meta=True)
    def range_sum(self, meta, children):
        i, lo, hi, body = children
        return Reduction(self.loc(meta), [str(i)], "range", body, lo, hi)

    @lark.v_args(meta=True)
    def full_sum(self, meta, children):
        return Reduction(self.loc(meta), [], "all", children[0])

    # declarations --------------------------------------------------------
    def dim_int(self, children):
        return (int(children[0]), self.loc(children[0]))

    def dim_name(self, children):
        return (str(children[0]), self.loc(children[0]))

    def shape(self, children):
        return children

    def array_decl(self, children):
        name, dims = children
        return ArrayDecl(self.loc(name), str(name), [d for d, _ in dims], [dl for _, dl in dims])

    def param_item(self, children):
        name, num = children
        return ParamDecl(self.loc(name), str(name), num.value)

    def param_decl(self, children):
        return ("params", children)

    def input_decl(self, children):
        return ("inputs", children)

    @lark.v_args(meta=True)
    def state_decl(self, meta, children):
        return ("states", [StateDecl(self.loc(meta), *children)])

    def let_decl(self, children):
        name, expr = children
        return ("lets", [LetDecl(self.loc(name), str(name), expr)])

    @lark.v_args(meta=True)
    def h_decl(self, meta, children):
        return ("hamiltonians", [HDecl(self.loc(meta), children[0])])

    def box_decl(self, children):
        name, num = children
        return ("boxes", [BoxDecl(self.loc(name), str(name), num.value)])

    @lark.v_args(meta=True)
    def system(self, meta, children):
        name, *decls = children
        groups: dict[str, list] = {
            k: [] for k in ("params", "inputs", "states", "lets", "hamiltonians", "boxes")
        }
        for kind, items in decls:
            groups[kind].extend(items)
        return System(self.loc(name), str(name), **groups)

    # simulate ------------------------------------------------------------
    def string(self, children):
        return (str(children[0])[1:-1], self.loc(children[0]))

    def word(self, children):
        text = str(children[0])
        special = {"nan": math.nan, "inf": math.inf}
        value = special.get(text.lower(), Word(text))
        return (value, self.loc(children[0]))

    @lark.v_args(meta=True)
    def list(self, meta, children):
        items = [c for c in children if c is not None]
        return ([self._plain(c) for c in items], self.loc(meta))

    def _plain(self, v):
        if isinstance(v, Num):
            return int(v.value) if v.is_int else v.value
        return v[0]

    def setting(self, children):
        name, value = children
        loc = value.loc if isinstance(value, Num) else value[1]
        return Setting(self.loc(name), str(name), self._plain(value), loc)

    def simulate(self, children):
        return children

    def start(self, children):
        system, *rest = children
        return system, (rest[0] if rest else [])


def parse(source: str, path: str = "<input>") -> Program:
    try:
        tree = _parser().parse(source)
    except lark.UnexpectedCharacters as e:
        loc = Loc(path, e.line, e.column, source)
        raise TpcError(f"unexpected character {source[e.pos_in_stream]!r}", loc) from None
    except lark.UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            lines = source.splitlines() or [""]
            loc = Loc(path, len(lines), len(lines[-1]) + 1, source)
            raise TpcError("unexpected end of file" + _describe_expected(e.expected), loc) from None
        loc = Loc(path, tok.line, tok.column, source)
        raise TpcError(f"unexpected {str(tok)!r}" + _describe_expected(e.expected), loc) from None
    except lark.UnexpectedEOF as e:
        lines = source.splitlines() or [""]
        loc = Loc(path, len(lines), len(lines[-1]) + 1, source)
        raise TpcError("unexpected end of file" + _describe_expected(set(e.expected)), loc) from None
    system, settings = _Builder(path, source).transform(tree)
    return Program(system, settings, path, source)


def parse_file(path: str | Path) -> Program:
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as e:
        raise TpcError(f"cannot read '{path}': {e.strerror}") from None
    return parse(source, str(path))
