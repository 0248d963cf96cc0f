"""The in-car agent: reads the car's signals, keeps every message until the platform has stored it, obeys commands.

`smartev agent run --config agent.toml` runs it; `smartev agent status --config agent.toml` tells how it is doing.
"""

from __future__ import annotations

import importlib
from typing import Any

from smartev.agent.config import AgentConfig, ConfigError, load_config
from smartev.agent.source import SignalSource

__all__ = ["AgentConfig", "ConfigError", "build_source", "load_config"]


def build_source(config: AgentConfig) -> SignalSource:
    """The signal source the config's `[source]` table names; ConfigError says what is wrong with it."""
    options: dict[str, Any] = dict(config.source)
    kind = options.get("kind")
    try:
        if kind == "simulator":
            from smartev.agent.simsource import from_options as simulator

            return simulator(options, config.vin)
        if kind == "can":
            from smartev.agent.can import from_options as can

            return can(options, config.base_dir)
        factory = options.get("factory")
        if not isinstance(factory, str) or ":" not in factory:
            raise ConfigError("[source] kind = 'python' needs factory = 'module:function'")
        module_name, _, attr = factory.partition(":")
        try:
            make = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"[source] factory {factory!r} cannot be loaded: {exc}") from None
        source: SignalSource = make(options)
        return source
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from None
