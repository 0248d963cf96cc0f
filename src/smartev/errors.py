"""One hierarchy of domain errors; the HTTP layer maps each to a status code.

SmartEVError
├── NotFound                 the thing does not exist, or the caller may not see it (404)
├── Forbidden                the caller is known but may not do this (403)
├── Unauthorized             no or bad credentials (401)
├── Conflict                 it exists already / state does not allow it (409)
├── InvalidInput             the request is well-formed but its content is wrong (422)
│   └── InvalidVIN
├── RateLimited              too many of these, slow down (429)
├── Unavailable              a dependency (database, broker) is down (503)
└── Unstorable               the database refuses this data itself (not an outage)
"""

from __future__ import annotations


class SmartEVError(Exception):
    """Base of every error smartev raises on purpose."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SmartEVError):
    """The thing does not exist, or the caller may not know it exists."""

    status_code = 404


class Forbidden(SmartEVError):
    """The caller is authenticated but their role does not allow this."""

    status_code = 403


class Unauthorized(SmartEVError):
    """Missing or wrong credentials."""

    status_code = 401


class Conflict(SmartEVError):
    """The thing exists already, or its state does not allow the change."""

    status_code = 409


class InvalidInput(SmartEVError):
    """The request parsed, but what it asks for is not valid; `loc` names the field when known."""

    status_code = 422

    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class InvalidVIN(InvalidInput):
    """A VIN that is not 17 ISO 3779 characters with a correct check digit."""


class RateLimited(SmartEVError):
    """Too many requests of this kind in a short time."""

    status_code = 429


class Unavailable(SmartEVError):
    """A dependency the request needs (database, broker) is down."""

    status_code = 503


class Unstorable(SmartEVError):
    """The database refused the data itself (a data error, not an outage): retrying will not help."""

    status_code = 422
