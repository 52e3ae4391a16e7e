"""``medsettle``: serve, migrate, demo, policy (validate, diff, explain)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence

from libs.core.errors import DomainError, Reason
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
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes sharing the port (SO_REUSEPORT), forked before any gRPC object exists; "
        "metrics on MEDSETTLE_METRICS_PORT + worker index",
    )
    s.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run migrations first (default: only for the embedded SQLite databases)",
    )

    m = sub.add_parser("migrate", help="upgrade the databases to the latest schema")
    m.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)")

    c = sub.add_parser(
        "dev-certs", help="write the development CAs (hospital, partner) and a certificate per role (docs/access.md)"
    )
    c.add_argument(
        "out_dir",
        metavar="OUT_DIR",
        help="directory to write ca.crt, partner-ca.crt, all-ca.crt and <role>.crt/.key into",
    )

    d = sub.add_parser("demo", help="start the suite on SQLite and drive a realistic run through it")
    d.add_argument("--data-dir", default=None, help="where the demo keeps its databases (default: a new temp dir)")
    d.add_argument("--port", type=int, default=0)
    d.add_argument(
        "--on",
        type=dt.date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="run the suite's clock from 09:00 China Standard Time on this day (default: now)",
    )

    pol = sub.add_parser("policy", help="check, compare and try out policy and catalogue files (offline)")
    psub = pol.add_subparsers(dest="policy_command", required=True)
    v = psub.add_parser("validate", help="every problem of every file at once, and whether they fit together")
    v.add_argument("files", nargs="+", metavar="FILE", help="policy and catalogue files (told apart by schema:)")
    f = psub.add_parser("diff", help="what changes between two policies (or two catalogues); exit 1 if any")
    f.add_argument("old", metavar="OLD")
    f.add_argument("new", metavar="NEW")
    f.add_argument("--limit", type=int, default=20, help="catalogues: items printed per kind of change (default 20)")
    e = psub.add_parser("explain", help="settle one visit offline and print the breakdown and trace")
    e.add_argument("policy", metavar="POLICY_FILE")
    e.add_argument("--visit", required=True, metavar="VISIT.json", help="the visit (docs/policy-tools.md)")
    e.add_argument("--catalogue", metavar="CATALOGUE_FILE", help="default: the shipped one of the treatment region")
    e.add_argument("--accumulators", metavar="ACC.json", help="year-to-date accumulators (default: a fresh year)")
    e.add_argument("--json", action="store_true", help="print the result as JSON (amounts in fen)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "policy":  # offline file tools: no settings, no logging set-up
        return _policy(args)
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
        if args.workers != 1:
            return _serve_workers(settings, names, args)
        if settings.metrics_port:
            from libs.platform.metrics import serve_metrics

            serve_metrics(settings.metrics_port)
        return _refusing_bad_policies(lambda: asyncio.run(_serve(settings, names, args.port, args.host, args.migrate)))

    if args.command == "demo":
        from services.demo import run_demo

        return _refusing_bad_policies(
            lambda: asyncio.run(run_demo(settings, port=args.port, keep_data=bool(args.data_dir), on=args.on))
        )
    return 2


def _refusing_bad_policies(run: Callable[[], int]) -> int:
    """A policy set that does not load at start stops the command with every problem named."""
    try:
        return run()
    except DomainError as exc:
        if exc.reason not in (Reason.POLICY_DATA_INVALID, Reason.CATALOGUE_DATA_INVALID):
            raise
        print(
            f"medsettle: the policies and catalogues of MEDSETTLE_POLICY_DIRS do not load: {exc.message}",
            file=sys.stderr,
        )
        for v in exc.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 2


def _policy(args: argparse.Namespace) -> int:
    """``medsettle policy ...``: exit 0 = valid / identical / settled, 1 = invalid / different /
    refused, 2 = usage (neither a file nor a loaded version; diff: a file it cannot compare)."""
    import json

    from libs.core.errors import DomainError
    from libs.policy import tools

    files = list(args.files) if args.policy_command == "validate" else []
    versions = []  # a policy or catalogue may also be named by its version: label@hash12 or label
    if args.policy_command == "diff":
        versions = [args.old, args.new]
    elif args.policy_command == "explain":
        versions = [p for p in (args.policy, args.catalogue) if p is not None]
        files = [p for p in (args.visit, args.accumulators) if p is not None]
    missing = [p for p in files if not os.path.isfile(p)]
    missing += [p for p in versions if not os.path.isfile(p) and tools.find_version(p) is None]
    if missing:
        print(
            f"medsettle policy {args.policy_command}: not a file (nor a loaded version): {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2

    if args.policy_command == "validate":
        report = tools.validate_files(args.files)
        _emit("\n".join(report.lines()))
        return 0 if report.ok else 1

    try:
        if args.policy_command == "diff":
            if args.limit < 0:
                print("medsettle policy diff: --limit must be 0 or more", file=sys.stderr)
                return 2
            diff = tools.diff_files(args.old, args.new, limit=args.limit)
            _emit("\n".join(diff.lines()))
            return 0 if diff.identical else 1
        ex = tools.explain_visit(
            args.policy, args.visit, catalogue_path=args.catalogue, accumulators_path=args.accumulators
        )
    except DomainError as exc:
        usage = args.policy_command == "diff"  # like diff(1): 2 = trouble, 1 = different
        what = f"{len(exc.violations)} problem(s)" if exc.violations else exc.message
        print(f"medsettle policy {args.policy_command}: {exc.reason.name}: {what}", file=sys.stderr)
        for v in exc.violations:
            print(f"{v.field}: {v.description}", file=sys.stderr)
        return 2 if usage else 1
    _emit(json.dumps(ex.to_json(), indent=2, ensure_ascii=False) if args.json else "\n".join(ex.lines()))
    return 0


def _emit(text: str) -> None:
    """Print; a reader that stops early (``| head``) is no error (the Python docs' recipe)."""

    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _serve_workers(settings: Settings, names: list[str], args: argparse.Namespace) -> int:
    from services.suite import migrate_all
    from services.workers import serve_workers

    if not 1 <= args.workers <= 64 or args.port == 0:
        print("medsettle serve: --workers takes 1..64 and a fixed --port (not 0)", file=sys.stderr)
        return 2
    migrate = args.migrate
    if migrate is None:
        migrate = all(settings.database_url(n).startswith("sqlite") for n in names)

    def run_migrations() -> int:
        asyncio.run(migrate_all(settings, names))
        return 0

    def run_worker(index: int) -> int:
        from libs.platform.logs import bind_process

        bind_process(worker=index, pid=os.getpid())
        if settings.metrics_port:
            from libs.platform.metrics import serve_metrics

            serve_metrics(settings.metrics_port + index)
        return _refusing_bad_policies(
            lambda: asyncio.run(_serve(settings, names, args.port, args.host, False, reuse_port=True))
        )

    return serve_workers(args.workers, run_worker, run_migrations if migrate else None)


async def _serve(
    settings: Settings, names: list[str], port: int, host: str, run_migrations: bool | None, *, reuse_port: bool = False
) -> int:
    from services.suite import build_host, migrate_all

    if run_migrations is None:
        run_migrations = all(settings.database_url(n).startswith("sqlite") for n in names)
    if run_migrations:
        await migrate_all(settings, names)
    server = build_host(settings, names, port=port, bind_host=host, reuse_port=reuse_port)
    await server.run_until_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
