"""Regenerate what follows from the access table (libs/platform/access.py):

* the table in docs/access.md (between its markers);
* the GRPCRoutes in k8s/base/gateway.yaml: one Exact method match per method open to hospitals
  (listener hospitals-grpc), and per method open to a bureau or the operator (partners-grpc).

    .venv/bin/python scripts/gen_access.py          # rewrite both
    .venv/bin/python scripts/gen_access.py --check  # exit 1 if either is stale

The local nginx gateway needs nothing: k8s/local-gateway/render.py reads the table itself (both
listeners).
tests/unit/test_access.py and tests/k8s/test_manifests.py fail while either file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from libs.platform import access  # noqa: E402

GATEWAY = ROOT / "k8s" / "base" / "gateway.yaml"
DOC = ROOT / "docs" / "access.md"
BACKEND = access.HOSTED_BY
# Hospitals' tools (grpcurl, grpc_health_probe) reach settlement's health and reflection.
TOOLS = ("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
NOTES = {
    "settlement": "# settlement also answers the standard health and reflection services for hospitals' tools\n"
    "# (grpcurl, grpc_health_probe) through the gateway.\n",
    "clearing": "# clearing: only a hospital's own reconciliation, clearing results and payments\n"
    "# (national 3201-3204).\n",
}
PARTNER_NOTES = {
    "filing": "# The partner listener: the methods the access table opens to the treatment-place and\n"
    "# insured-place bureaus and the national operator (their own port, hostname and client CA).\n",
}


# The Gateway's listeners: (section name, hostname, route name prefix, whom it admits).
LISTENERS = (
    ("hospitals-grpc", "settle.medsettle.internal", "", "hospital_facing"),
    ("partners-grpc", "partners.medsettle.internal", "partner-", "partner_facing"),
)


def routes() -> str:
    parts = []
    for section, hostname, prefix, facing in LISTENERS:
        by_backend: dict[str, list[tuple[str, str]]] = {}
        for method, rule in access.RULES.items():
            if getattr(rule, facing):
                service, name = method.strip("/").split("/")
                by_backend.setdefault(BACKEND[service], []).append((service, name))
        if "settlement" not in by_backend:
            by_backend["settlement"] = []
        for backend, methods in by_backend.items():
            matches = [
                f"        - method:\n            type: Exact\n            service: {s}\n            method: {m}\n"
                for s, m in methods
            ]
            if backend == "settlement":
                matches += [f"        - method:\n            type: Exact\n            service: {t}\n" for t in TOOLS]
            parts.append(
                "---\n"
                + (NOTES.get(backend, "") if not prefix else PARTNER_NOTES.get(backend, ""))
                + "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n"
                + f"  name: {prefix}{backend}\n  labels:\n    medsettle.io/listener: {section.split('-')[0]}\n"
                + f"spec:\n  parentRefs:\n    - name: medsettle\n      sectionName: {section}\n"
                + f"  hostnames: [{hostname}]\n  rules:\n    - matches:\n"
                + "".join(matches)
                + "      filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier:\n"
                + "            remove: [x-medsettle-institution, x-medsettle-principal]\n"
                + f"      backendRefs:\n        - name: {backend}\n          port: 50051\n"
            )
    return "".join(parts)


def gateway_text() -> str:
    """The Gateway object as it is (everything up to its end), then the generated routes."""
    text = GATEWAY.read_text(encoding="utf-8")
    head = text[: text.index("\n---\n", text.index("kind: Gateway")) + 1]
    return head + routes()


def doc_text() -> str:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(access.START, 1)
    _, tail = rest.split(access.END, 1)
    return head + access.START + access.render_markdown() + access.END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((DOC, doc_text()), (GATEWAY, gateway_text())):
        if path.read_text(encoding="utf-8") != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("stale: " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
