"""Apply Alembic migrations (`smartev db upgrade`), from the CLI or at platform start."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from smartev.db.engine import normalise_url


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("smartev.db").joinpath("migrations")))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` (blocking; for the CLI)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision`, on the caller's event loop."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection: object) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)
