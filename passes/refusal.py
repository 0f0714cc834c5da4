"""A pass refusing one op, so that the driver can point at it.

`Refusal(op, message)` is a PassFailedException that carries the op: `tpc opt` reports it at
the op's place in the IR text it read (or at the op's source location when the op came from a
.ham file), naming the op, the way verifier errors are reported.
"""

from __future__ import annotations

from xdsl.ir import Operation
from xdsl.utils.exceptions import PassFailedException


class Refusal(PassFailedException):
    def __init__(self, op: Operation | None, message: str):
        super().__init__(message)
        self.op = op
