"""Render the local gateway's nginx.conf from nginx.conf.template.

Importable (``render(template_path, **values) -> str``) for the tests, and a small CLI:

    python k8s/local-gateway/render.py --out "$PWD/data/gw/nginx.conf" \
        listen_port=8443 prefix="$PWD/data/gw" \
        filing_upstream=127.0.0.1:50051 eligibility_upstream=127.0.0.1:50051 \
        settlement_upstream=127.0.0.1:50051 clearing_upstream=127.0.0.1:50051 \
        tls_cert=gw.crt tls_key=gw.key client_ca=ca.crt \
        partner_listen_port=9443 partner_client_ca=partner-ca.crt

The routes are not a value: ``@@{hospital_routes}`` becomes one exact ``location`` per method the
access table (libs/platform/access.py) opens to hospitals, and ``@@{partner_routes}`` one per
method it opens to the bureaus or the operator, so each listener routes exactly those.

Placeholders are ``@@{name}``, so nginx's own ``$variables`` pass through untouched. Every
placeholder must be given (a missing one raises KeyError) and values may not contain
characters that would end an nginx directive.
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
_FORBIDDEN = set(";{}\"'\n\r\t ")
ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"hospital_routes", "partner_routes"}
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from libs.platform.access import HOSTED_BY as UPSTREAM_OF  # noqa: E402 - after the path is set
from libs.platform.access import RULES  # noqa: E402


def hospital_methods() -> list[str]:
    """``/package.Service/Method`` of every RPC the access table opens to hospitals."""
    return [m for m, rule in RULES.items() if rule.hospital_facing]


def partner_methods() -> list[str]:
    """``/package.Service/Method`` of every RPC the access table opens to a bureau or the operator."""
    return [m for m, rule in RULES.items() if rule.partner_facing]


def _locations(methods: list[str]) -> str:
    lines = []
    for method in methods:
        upstream = UPSTREAM_OF[method.split("/")[1]]
        lines.append(f"        location = {method} {{ grpc_pass grpc://{upstream}; }}")
    return "\n".join(lines).lstrip()


def hospital_routes() -> str:
    return _locations(hospital_methods())


def partner_routes() -> str:
    return _locations(partner_methods())


class NginxTemplate(string.Template):
    delimiter = "@@"


def placeholders(template_path: str | Path = TEMPLATE) -> set[str]:
    """Names the template expects."""
    text = Path(template_path).read_text(encoding="utf-8")
    found = {m.group("named") or m.group("braced") for m in NginxTemplate.pattern.finditer(text)} - {None}
    return found - GENERATED


def render(template_path: str | Path = TEMPLATE, **values: object) -> str:
    text = Path(template_path).read_text(encoding="utf-8")
    clean: dict[str, str] = {}
    for name, value in values.items():
        value_str = str(value)
        if not value_str or _FORBIDDEN & set(value_str):
            raise ValueError(f"{name}={value_str!r}: empty, or would break the nginx syntax")
        clean[name] = value_str
    unknown = set(clean) - placeholders(template_path)
    if unknown:
        raise KeyError(f"not in the template: {sorted(unknown)}")
    return NginxTemplate(text).substitute(clean, hospital_routes=hospital_routes(), partner_routes=partner_routes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default=str(TEMPLATE))
    parser.add_argument("--out", help="write here (default: stdout)")
    parser.add_argument("values", nargs="*", metavar="name=value")
    args = parser.parse_args(argv)
    values = dict(item.split("=", 1) for item in args.values)
    text = render(args.template, **values)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
