"""smartev: an open smart-EV service platform (connected cars, live twin, history, commands)."""

__version__ = "0.1.0"
