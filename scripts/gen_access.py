"""Regenerate what follows from the access table (libs/platform/access.py):

* the table in docs/access.md (between its markers);
* the GRPCRoutes in k8s/base/gateway.yaml: one Exact method match per method open to hospitals
  (listener hospitals-grpc), and per method open to a bureau or the operator (partners-grpc);
* the last paragraph of every rpc's comment in protos/medsettle ("Who may call: ..."), so the
  contracts (and reflection, after `make protos`) say who may call each method.

    .venv/bin/python scripts/gen_access.py          # rewrite both
    .venv/bin/python scripts/gen_access.py --check  # exit 1 if either is stale

The local nginx gateway needs nothing: k8s/local-gateway/render.py reads the table itself (both
listeners).
tests/unit/test_access.py and tests/k8s/test_manifests.py fail while any of them is stale, and
tests/unit/test_contract_docs.py while an rpc's comment disagrees with the table (after a change
of the table or the protos: this script, then `make protos` for the descriptor set).
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
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


PROTOS = ROOT / "protos" / "medsettle"
WHO = "Who may call: "
_PACKAGE = re.compile(r"^package ([\w.]+);", re.M)
_SERVICE = re.compile(r"^service (\w+) \{")
_RPC = re.compile(r"^(\s*)rpc (\w+)\((\w+)\) returns \((stream )?")
_MUTATING = re.compile(r"^message (\w+) \{\n(?:(?!^\}).*\n)*?\s*string request_id = \d+\b", re.M)
MUTATING = "Mutating: runs at most once per request_id; retry with the same request_id and payload."
READ_ONLY = "Read-only: retry freely."
FEED = "A feed: after a break, resume from the last position received."


def who_may_call(method: str) -> str:
    """One sentence from the access table: the roles, each with the request field it must own."""
    rule = access.RULES[method]
    scopes = rule.scope_fields()
    parts = []
    for role in access.CALLER_ROLES:
        if role not in rule.roles:
            continue
        title, field = access.ROLE_TITLES[role], scopes.get(role)
        if field and role is access.I:
            title += f" ({field} must be its own)"
        elif field and role is access.APP:
            title += f" ({field} must be its person)"
        elif field:
            title += f" ({field} in its region)"
        parts.append(title)
    text = WHO + "; ".join(parts)
    return text + (f"; {rule.note}." if rule.note else ".")


def _retries(text: str, request_type: str, stream: bool) -> str:
    if stream:
        return FEED
    return MUTATING if request_type in set(_MUTATING.findall(text)) else READ_ONLY


def _rewrite_proto(text: str) -> str:
    package = _PACKAGE.search(text)
    if not package:
        return text
    lines, out, service = text.split("\n"), [], ""
    for line in lines:
        if m := _SERVICE.match(line):
            service = f"{package.group(1)}.{m.group(1)}"
        elif line.startswith("}"):
            service = ""
        rpc = _RPC.match(line)
        method = f"/{service}/{rpc.group(2)}" if rpc and service else ""
        if method in access.RULES:
            indent = rpc.group(1)  # type: ignore[union-attr]
            # the comment block right above the rpc, without its old "Who may call" paragraph
            start = len(out)
            while start > 0 and out[start - 1].strip().startswith("//"):
                start -= 1
            block = out[start:]
            who = next((i for i, c in enumerate(block) if c.strip().startswith("// " + WHO)), len(block))
            del out[start + who :]
            sentence = f"{who_may_call(method)} {_retries(text, rpc.group(3), bool(rpc.group(4)))}"  # type: ignore[union-attr]
            wrapped = textwrap.wrap(sentence, width=100 - len(indent) - 3, break_on_hyphens=False)
            out += [f"{indent}// {w}" for w in wrapped]
        out.append(line)
    return "\n".join(out)


def proto_texts() -> dict[Path, str]:
    return {p: _rewrite_proto(p.read_text(encoding="utf-8")) for p in sorted(PROTOS.rglob("*.proto"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((DOC, doc_text()), (GATEWAY, gateway_text()), *proto_texts().items()):
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
