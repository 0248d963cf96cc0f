"""Vehicles: registry, telemetry ingest, live twin, history and remote commands."""
