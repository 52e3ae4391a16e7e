"""Alembic environment of the settlement service (its own database and version table)."""

from libs.platform.migrate import run_env
from services.settlement.adapters.db import metadata

run_env(metadata)
