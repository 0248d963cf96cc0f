"""Pages served by the platform (the status page now; the owner app and operator console later)."""
