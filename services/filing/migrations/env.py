"""Alembic environment of the filing service (its own database and version table)."""

from libs.platform.migrate import run_env
from services.filing.adapters.db import metadata

run_env(metadata)
