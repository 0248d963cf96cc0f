"""Database plumbing: the engine, the declarative base and the Alembic migrations."""
