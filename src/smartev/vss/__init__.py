"""The COVESA VSS 6.0 signal catalog: which signals exist, their types, units and ranges."""

from smartev.vss.catalog import Catalog, Signal, SignalRejected, default_catalog

__all__ = ["Catalog", "Signal", "SignalRejected", "default_catalog"]
