"""``medsettle``: serve, migrate, demo."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from libs.platform.logs import configure_logging
from libs.platform.settings import SERVICES, Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medsettle", description="Cross-region direct settlement, as gRPC services")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve one service, or all of them in one process")
    s.add_argument("service", nargs="?", choices=SERVICES, help="the service to serve (omit with --all)")
    s.add_argument("--all", action="store_true", help="all four services on one port (all-in-one)")
    s.add_argument("--port", type=int, default=50051)
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; '[::]' for every interface)"
    )
    s.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run migrations first (default: only for the embedded SQLite databases)",
    )

    m = sub.add_parser("migrate", help="upgrade the databases to the latest schema")
    m.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)")

    c = sub.add_parser("dev-certs", help="write a development CA and a client certificate per role (docs/access.md)")
    c.add_argument("out_dir", metavar="OUT_DIR", help="directory to write ca.crt and <role>.crt/.key into")

    d = sub.add_parser("demo", help="start the suite on SQLite and drive a realistic run through it")
    d.add_argument("--data-dir", default=None, help="where the demo keeps its databases (default: a new temp dir)")
    d.add_argument("--port", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dev-certs":
        from pathlib import Path

        from libs.platform.devpki import write_dev_certs

        for path in write_dev_certs(Path(args.out_dir)):
            print(path)
        return 0
    try:
        overrides = {}
        if args.command == "demo" and args.data_dir:
            overrides["data_dir"] = args.data_dir
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"medsettle: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json)

    if args.command == "migrate":
        from services.suite import migrate_all

        unknown = [n for n in args.services if n not in SERVICES]
        if unknown:
            print(f"medsettle migrate: unknown service(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        asyncio.run(migrate_all(settings, args.services or SERVICES))
        print(f"migrated: {', '.join(args.services or SERVICES)}")
        return 0

    if args.command == "serve":
        if args.all == bool(args.service):
            print("medsettle serve: name one SERVICE or pass --all", file=sys.stderr)
            return 2
        names = list(SERVICES) if args.all else [args.service]
        if settings.metrics_port:
            from libs.platform.metrics import serve_metrics

            serve_metrics(settings.metrics_port)
        return asyncio.run(_serve(settings, names, args.port, args.host, args.migrate))

    if args.command == "demo":
        from services.demo import run_demo

        return asyncio.run(run_demo(settings, port=args.port, keep_data=bool(args.data_dir)))
    return 2


async def _serve(settings: Settings, names: list[str], port: int, host: str, run_migrations: bool | None) -> int:
    from services.suite import build_host, migrate_all

    if run_migrations is None:
        run_migrations = all(settings.database_url(n).startswith("sqlite") for n in names)
    if run_migrations:
        await migrate_all(settings, names)
    server = build_host(settings, names, port=port, bind_host=host)
    await server.run_until_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
