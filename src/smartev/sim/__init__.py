"""Simulated vehicles (and later charge points and homes) that speak the platform's real protocols."""

from smartev.sim.car import CarStats, Ledger, SimulatedCar
from smartev.sim.fleet import CarIdentity, Fleet, FleetStats
from smartev.sim.model import CAR_MODELS, CarModel, CarSpec, CarState, CommandOutcome

__all__ = [
    "CAR_MODELS",
    "CarIdentity",
    "CarModel",
    "CarSpec",
    "CarState",
    "CarStats",
    "CommandOutcome",
    "Fleet",
    "FleetStats",
    "Ledger",
    "SimulatedCar",
]
