"""Adapters for the wire: MQTT (platform client, embedded broker, Mosquitto files)."""
