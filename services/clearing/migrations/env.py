"""Alembic environment of the clearing service (its own database and version table)."""

from libs.platform.migrate import run_env
from services.clearing.adapters.db import metadata

run_env(metadata)
