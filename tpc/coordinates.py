"""Democratic heliocentric coordinates (Duncan, Levison and Lee 1998), the variables of the
Wisdom-Holman map in examples/outer_solar_system_wh.ham.

For a central body 0 and planets i = 1..N with inertial positions x and velocities v:
Q_i = x_i - x_0 (heliocentric positions) and P_i = m_i (v_i - v_cm) (barycentric momenta).
In them H = sum_i |P_i|^2 / (2 m_i) - G m_0 m_i / |Q_i|   (H_kep)
          + |sum_i P_i|^2 / (2 m_0)                       (H_jump)
          - sum_{i<j} G m_i m_j / |Q_i - Q_j|             (H_int),
the centre of mass moving uniformly apart. The inverse puts the centre of mass at rest at the
origin.
"""

from __future__ import annotations

import numpy as np


def to_democratic_heliocentric(masses, x, v) -> tuple[np.ndarray, np.ndarray]:
    """(Q, P) of the planets from inertial (x, v) of all bodies, row 0 the central body."""
    m = np.asarray(masses, dtype=float)
    x, v = np.asarray(x, dtype=float), np.asarray(v, dtype=float)
    if m.ndim != 1 or x.shape != (len(m), 3) or v.shape != x.shape:
        raise ValueError("need masses [N+1] and positions, velocities [N+1, 3]")
    v_cm = (m[:, None] * v).sum(axis=0) / m.sum()
    return x[1:] - x[0], m[1:, None] * (v[1:] - v_cm)


def from_democratic_heliocentric(m0: float, masses, q, p) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (x, v) of all bodies, row 0 the central body, from the planets' (Q, P)."""
    m = np.asarray(masses, dtype=float)
    q, p = np.asarray(q, dtype=float), np.asarray(p, dtype=float)
    total = m0 + m.sum()
    x0 = -(m[:, None] * q).sum(axis=0) / total
    x = np.vstack([x0, q + x0])
    v = np.vstack([-(p.sum(axis=0)) / m0, p / m[:, None]])
    return x, v
