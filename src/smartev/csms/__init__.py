"""The OCPP central system (CSMS): stations, charge sessions, tariffs, and the OCPP 1.6J/2.0.1 adapters."""
