"""tpc: a compiler for Hamiltonian physics."""

from tpc.api import Simulation, Trajectory, compile

__all__ = ["Simulation", "Trajectory", "compile"]
