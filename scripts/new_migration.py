"""Autogenerate a migration for one service: python scripts/new_migration.py SERVICE "message".

Runs against a scratch SQLite database upgraded to head, so the diff is models vs history.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from libs.platform.migrate import alembic_config, upgrade

if __name__ == "__main__":
    service, message = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'scratch.db'}"
        upgrade(service, url)
        cfg = alembic_config(service, url)
        versions = Path(cfg.get_main_option("script_location") or "") / "versions"
        rev = f"{len(list(versions.glob('*.py'))) + 1:04d}"
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev)
