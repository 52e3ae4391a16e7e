"""Alembic environment of the eligibility service (its own database and version table)."""

from libs.platform.migrate import run_env
from services.eligibility.adapters.db import metadata

run_env(metadata)
