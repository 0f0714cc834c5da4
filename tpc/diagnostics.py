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


class TpcError(Exception):
    """An error in the user's input, reported as `file:line:col: error: message` plus a caret."""

    def __init__(self, message: str, loc: Loc | None = None, notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.notes = notes

    def render(self) -> str:
        if self.loc is None:
            return f"error: {self.message}"
        lines = [f"{self.loc}: error: {self.message}"]
        if self.loc.source is not None:
            src_lines = self.loc.source.splitlines()
            if 1 <= self.loc.line <= len(src_lines):
                text = src_lines[self.loc.line - 1].expandtabs(1)
                lines.append(text)
                lines.append(" " * (self.loc.col - 1) + "^")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class RunError(TpcError):
    """A failure while running compiled code (non-finite state, no convergence)."""
