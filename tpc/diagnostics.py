"""Source locations and the one error type every user-facing failure goes through."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int
    # the whole text, so the offending line can be shown
    source: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def source_lines(text: str) -> list[str]:
    """The lines as the lexer counts them: only '\\n' ends a line (not '\\f', '\\v', U+2028,
    which `str.splitlines` also splits on), and a '\\r' before it belongs to the line break."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def shown_line(line: str) -> str:
    """A source line for the terminal: one column per character, so the caret lines up, and no
    control character that would move the cursor."""
    return "".join(c if c.isprintable() else " " for c in line)


def printable(text: str) -> str:
    """A message quoting user input, with its control characters escaped (\\x00)."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode()
                   for c in text)


class TpcError(Exception):
    """An error in the user's input, reported as `file:line:col: error: message` plus a caret."""

    def __init__(self, message: str, loc: Loc | None = None, notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.notes = notes

    def render(self) -> str:
        message = printable(self.message)
        if self.loc is None:
            return f"error: {message}"
        lines = [f"{self.loc}: error: {message}"]
        if self.loc.source is not None:
            src_lines = source_lines(self.loc.source)
            if 1 <= self.loc.line <= len(src_lines):
                lines.append(shown_line(src_lines[self.loc.line - 1]))
                lines.append(" " * (self.loc.col - 1) + "^")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class RunError(TpcError):
    """A failure while running compiled code (non-finite state, no convergence)."""
