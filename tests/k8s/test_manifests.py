"""The Kubernetes manifests keep the promises of ARCHITECTURE.md §5-6.

Renders every overlay with kustomize (the one built into kubectl), validates every object
offline (Kubernetes schemas from kubernetes-validate; Gateway API schemas from the npm package
@kubernetes-models/gateway-api), then checks the promises themselves: gRPC health probes,
non-root read-only containers, sizing, PDB + HPA per Deployment, replicas, the network edges,
the gateway's client-certificate requirement, and that nothing routes to clearing. The local
nginx gateway is syntax-checked and exercised end to end with real gRPC calls.

The tools come from scripts/install-k8s-tools.sh. Missing tools skip these tests, except under
CI (env CI set), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TOOLS = ROOT / ".tools"
OVERLAYS = ("local", "production")
SERVICES = ("filing", "eligibility", "settlement", "clearing")
HEALTH_NAME = {
    "filing": "medsettle.filing.v1.FilingService",
    "eligibility": "medsettle.eligibility.v1.EligibilityService",
    "settlement": "medsettle.settlement.v1.SettlementService",
    "clearing": "medsettle.clearing.v1.ClearingService",
}
# The Kubernetes releases whose schemas every object must satisfy: the kubectl we render with,
# and the newest release kubernetes-validate bundles.
K8S_SCHEMA_VERSIONS = tuple(os.environ.get("MEDSETTLE_K8S_SCHEMA_VERSIONS", "1.35.0,1.37.0").split(","))
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
NGF_GROUP = "gateway.nginx.org"
INSTITUTION_HEADER = "x-medsettle-institution"


# --------------------------------------------------------------------------- tools


def _missing(what: str) -> None:
    reason = f"{what} not installed: run scripts/install-k8s-tools.sh"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _kubectl() -> str:
    candidate = os.environ.get("MEDSETTLE_KUBECTL") or str(TOOLS / "bin" / "kubectl")
    if not os.access(candidate, os.X_OK):
        _missing(f"kubectl (kustomize) at {candidate}")
    return candidate


def _gateway_models() -> tuple[str, Path]:
    node = shutil.which("node")
    modules = TOOLS / "npm" / "node_modules"
    if node is None or not (modules / "@kubernetes-models" / "gateway-api" / "package.json").exists():
        _missing("node and @kubernetes-models/gateway-api")
    assert node is not None
    return node, modules


def _nginx() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        _missing("nginx")
    assert nginx is not None
    return nginx


# --------------------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    kubectl = _kubectl()
    out: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        proc = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"kustomize {overlay} failed:\n{proc.stderr}"
        out[overlay] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return out


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered[request.param]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def by_name(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objs, kind)}


def service_deployments(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    deps = by_name(objs, "Deployment")
    return {name: deps[name] for name in SERVICES if name in deps}


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objs:
        if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]


# --------------------------------------------------------------------------- schemas


def test_every_overlay_renders_every_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, objs in rendered.items():
        assert sorted(service_deployments(objs)) == sorted(SERVICES), overlay
        assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"medsettle"}


def test_core_objects_match_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        _missing("kubernetes-validate (pip)")
    import kubernetes_validate  # type: ignore[import-untyped]

    errors = []
    for obj in objects:
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
        if group in (GATEWAY_API_GROUP, NGF_GROUP):
            continue  # CRDs: checked below
        for version in K8S_SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except Exception as exc:  # noqa: BLE001 - reported as a test failure below
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} @ {version}: {exc}")
    assert not errors, "\n".join(errors)


def test_gateway_api_objects_match_the_gateway_api_schemas(objects: list[dict[str, Any]]) -> None:
    node, modules = _gateway_models()
    gateway_objs = [o for o in objects if o["apiVersion"].startswith(GATEWAY_API_GROUP + "/")]
    assert {o["kind"] for o in gateway_objs} <= {"Gateway", "GRPCRoute", "BackendTLSPolicy"}
    assert {"Gateway", "GRPCRoute"} <= {o["kind"] for o in gateway_objs}
    proc = subprocess.run(
        [node, str(Path(__file__).with_name("validate_gateway_api.mjs")), str(modules)],
        input=json.dumps(gateway_objs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(gateway_objs)
    errors = [f"{r['kind']}/{r['name']}: {r['error']}" for r in results if r["error"]]
    assert not errors, "\n".join(errors)


def test_implementation_specific_objects_have_the_expected_shape(objects: list[dict[str, Any]]) -> None:
    # No registry ships the NGINX Gateway Fabric CRD schemas: a structural check instead.
    unknown = [o for o in objects if o["apiVersion"].split("/")[0] == NGF_GROUP and o["kind"] != "SnippetsFilter"]
    assert not unknown
    for sf in of_kind(objects, "SnippetsFilter"):
        assert sf["apiVersion"] == f"{NGF_GROUP}/v1alpha1"
        assert set(sf["spec"]) == {"snippets"}
        for snippet in sf["spec"]["snippets"]:
            assert set(snippet) == {"context", "value"}
            assert snippet["context"] in ("main", "http", "http.server", "http.server.location")


# --------------------------------------------------------------------------- workloads


def test_every_deployment_probes_the_grpc_health_of_its_own_service(objects: list[dict[str, Any]]) -> None:
    for name, dep in service_deployments(objects).items():
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        # with mTLS required on 50051, the kubelet (no TLS) probes the plaintext health-only port
        port = int(env["MEDSETTLE_HEALTH_PORT"]) if "MEDSETTLE_HEALTH_PORT" in env else 50051
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["grpc"] == {"port": port, "service": HEALTH_NAME[name]}, (name, probe)
        assert container["args"][:2] == ["serve", name]
        assert {p["containerPort"] for p in container["ports"]} == {50051, 9464} | {port}


TLS_ENV = (
    "MEDSETTLE_TLS_CERT_FILE",
    "MEDSETTLE_TLS_KEY_FILE",
    "MEDSETTLE_TLS_CLIENT_CA_FILE",
    "MEDSETTLE_PEER_CA_FILE",
    "MEDSETTLE_PEER_CERT_FILE",
    "MEDSETTLE_PEER_KEY_FILE",
)


def test_production_servers_require_mtls_with_certificates_from_their_secrets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Every server of the production overlay sets MEDSETTLE_REQUIRE_MTLS (so it cannot start
    without mTLS), and every TLS file it names lies on a read-only mount of its own Secret; its
    probes use the plaintext health-only port; the gateway presents a client certificate to the
    services and verifies theirs (BackendTLSPolicy for each Service it routes to)."""
    objs = rendered["production"]
    deployments = service_deployments(objs)
    assert set(deployments) == set(SERVICES)
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MEDSETTLE_REQUIRE_MTLS"]["value"] == "true", name
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for var in TLS_ENV:
            path = Path(env[var]["value"])
            mount = mounts[str(path.parent)]
            assert mount.get("readOnly") is True, (name, var)
            secret = volumes[mount["name"]]["secret"]
            assert secret["secretName"] == f"medsettle-{name}-tls", (name, var)
            assert path.name in ("tls.crt", "tls.key", "ca.crt"), (name, var)
        assert int(env["MEDSETTLE_HEALTH_PORT"]["value"]) != 50051
    gateway_services = {
        b["name"] for r in of_kind(objs, "GRPCRoute") for rule in r["spec"]["rules"] for b in rule["backendRefs"]
    }
    policies = of_kind(objs, "BackendTLSPolicy")
    assert {ref["name"] for p in policies for ref in p["spec"]["targetRefs"]} >= gateway_services
    for pol in policies:
        assert pol["spec"]["validation"]["caCertificateRefs"][0]["name"] == "medsettle-service-ca"
    (gateway,) = of_kind(objs, "Gateway")
    assert gateway["spec"]["tls"]["backend"]["clientCertificateRef"]["kind"] == "Secret"
    # TLS backends: no Service still announces cleartext HTTP/2
    for svc in of_kind(objs, "Service"):
        assert all(p.get("appProtocol") != "kubernetes.io/h2c" for p in svc["spec"]["ports"]), svc["metadata"]["name"]
    # the local overlay stays plaintext (identity headers from the pod's loopback / mesh)
    for name, dep in service_deployments(rendered["local"]).items():
        env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        assert "MEDSETTLE_REQUIRE_MTLS" not in env, name


def test_no_container_runs_as_root_or_with_privileges(objects: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(objects):
        pod_ctx = spec.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, where
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for c in spec.get("initContainers", []) + spec["containers"]:
            ctx = c.get("securityContext", {})
            label = f"{where}/{c['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, label
            uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
            assert isinstance(uid, int) and uid != 0, label
            assert ctx.get("readOnlyRootFilesystem") is True, label
            assert ctx.get("allowPrivilegeEscalation") is False, label
            assert ctx.get("privileged", False) is False, label
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], label
            assert not ctx.get("capabilities", {}).get("add"), label
            assert ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type") == "RuntimeDefault"


def test_every_container_has_resource_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(objects):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(section, {})), f"{where}/{c['name']} {section}"


def test_every_deployment_has_a_matching_pdb_and_hpa(objects: list[dict[str, Any]]) -> None:
    pdbs = of_kind(objects, "PodDisruptionBudget")
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    for name, dep in service_deployments(objects).items():
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
        assert len(matching) == 1, f"{name}: {len(matching)} PDBs"
        targets = [
            h
            for h in hpas
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        assert len(targets) == 1, f"{name}: {len(targets)} HPAs"
        assert targets[0]["apiVersion"] == "autoscaling/v2"


def test_production_runs_at_least_two_replicas_of_everything(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objs = rendered["production"]
    hpas = by_name(objs, "HorizontalPodAutoscaler")
    for name, dep in service_deployments(objs).items():
        assert dep["spec"].get("replicas", 2) >= 2, name
        assert hpas[name]["spec"]["minReplicas"] >= 2, name
        assert hpas[name]["spec"]["maxReplicas"] >= hpas[name]["spec"]["minReplicas"]


def test_termination_grace_outlasts_drain_plus_grace(objects: list[dict[str, Any]]) -> None:
    (config,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("medsettle-config")]
    shutdown = int(config["data"]["MEDSETTLE_DRAIN_SECONDS"]) + int(config["data"]["MEDSETTLE_GRACE_SECONDS"])
    for name, dep in service_deployments(objects).items():
        spec = dep["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > shutdown, name
        env_from = [e["configMapRef"]["name"] for e in spec["containers"][0]["envFrom"]]
        assert env_from == [config["metadata"]["name"]], name


def test_each_service_has_a_headless_twin_a_migration_job_and_a_quiet_service_account(
    objects: list[dict[str, Any]],
) -> None:
    svcs = by_name(objects, "Service")
    jobs = by_name(objects, "Job")
    sas = by_name(objects, "ServiceAccount")
    for name, dep in service_deployments(objects).items():
        selector = dep["spec"]["selector"]["matchLabels"]
        assert svcs[name]["spec"]["type"] == "ClusterIP"
        assert svcs[f"{name}-headless"]["spec"]["clusterIP"] == "None"
        for svc in (svcs[name], svcs[f"{name}-headless"]):
            assert svc["spec"]["selector"] == selector  # never the migration Job's pods
            assert [p["port"] for p in svc["spec"]["ports"]] == [50051]
        job = jobs[f"{name}-migrate"]
        (migrate,) = job["spec"]["template"]["spec"]["containers"]
        assert migrate["args"] == ["migrate", name]
        assert migrate["image"] == dep["spec"]["template"]["spec"]["containers"][0]["image"]
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
        assert sas[name]["automountServiceAccountToken"] is False
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_database_urls_come_from_secret_references(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, objs in rendered.items():
        for name, dep in service_deployments(objs).items():
            env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
            ref = env[f"MEDSETTLE_{name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref["name"].startswith(f"medsettle-{name}-db") and ref["key"] == "url", overlay
    # Production commits references only: no Secret object at all.
    assert of_kind(rendered["production"], "Secret") == []


# --------------------------------------------------------------------------- network policy

PORT_GRPC, PORT_METRICS = "50051/TCP", "9464/TCP"
GRPC_EDGES = {
    # the gateway reaches exactly the services with a method open to hospitals (access table)
    ("gateway", "eligibility"),
    ("gateway", "settlement"),
    ("gateway", "clearing"),
    ("gateway", "filing"),  # the bureaus' filing methods, partner listener only
    ("settlement", "eligibility"),
    ("eligibility", "filing"),
    ("filing", "eligibility"),  # GetInstitution when a special disease is filed
    ("clearing", "settlement"),
}
ALLOWED_EDGES = (
    {(src, dst, PORT_GRPC) for src, dst in GRPC_EDGES}
    | {("*", "dns", "53/UDP"), ("*", "dns", "53/TCP")}
    | {("medsettle", "otlp", "4317/TCP")}
    | {("prometheus", "medsettle-servers", PORT_METRICS)}
    | {(svc, "postgres", "5432/TCP") for svc in SERVICES}
    # The gateway's own front door; its data plane may shift 443 inside the pod.
    | {("hospitals", "gateway", f"{p}/TCP") for p in (443, 8443, 10443)}
    # The partner listener, from the bureaus' and the operator's network.
    | {("partners", "gateway", "9443/TCP")}
)
PARTNER_PORTS = {"9443/TCP"}


def _role(selector: dict[str, Any] | None, ip_block: dict[str, Any] | None, port: str) -> str:
    if ip_block is not None:
        if port == "5432/TCP":
            return "postgres"
        return "partners" if port in PARTNER_PORTS else "hospitals"
    labels = (selector or {}).get("matchLabels", {})
    assert not (selector or {}).get("matchExpressions"), selector
    name = labels.get("app.kubernetes.io/name")
    if not labels:
        return "*"
    if "gateway.networking.k8s.io/gateway-name" in labels:
        return "gateway"
    if labels.get("k8s-app") == "kube-dns":
        return "dns"
    if name in SERVICES:
        return str(name)
    if name == "opentelemetry-collector":
        return "otlp"
    if name in ("prometheus", "postgresql"):
        return {"prometheus": "prometheus", "postgresql": "postgres"}[name]
    if labels == {"app.kubernetes.io/part-of": "medsettle"}:
        return "medsettle"
    if labels == {"app.kubernetes.io/part-of": "medsettle", "app.kubernetes.io/component": "server"}:
        return "medsettle-servers"
    raise AssertionError(f"unknown peer {labels}")


def network_edges(objs: list[dict[str, Any]]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(ingress edges, egress edges) as (source, destination, port/protocol)."""
    ingress: set[tuple[str, str, str]] = set()
    egress: set[tuple[str, str, str]] = set()
    for pol in of_kind(objs, "NetworkPolicy"):
        spec = pol["spec"]
        for direction, key, peers_key in (("Ingress", "ingress", "from"), ("Egress", "egress", "to")):
            for rule in spec.get(key, []):
                assert direction in spec["policyTypes"]
                peers, ports = rule.get(peers_key), rule.get("ports")
                assert peers and ports, f"{pol['metadata']['name']}: a rule without peers or ports allows everything"
                for port_spec in ports:
                    port = f"{port_spec['port']}/{port_spec.get('protocol', 'TCP')}"
                    subject = _role(spec["podSelector"], None, port)
                    for peer in peers:
                        other = _role(peer.get("podSelector"), peer.get("ipBlock"), port)
                        if direction == "Ingress":
                            ingress.add((other, subject, port))
                        else:
                            egress.add((subject, other, port))
    return ingress, egress


def test_the_namespace_denies_all_traffic_by_default(objects: list[dict[str, Any]]) -> None:
    deny = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1


def test_every_allowed_network_edge_is_a_promised_one(objects: list[dict[str, Any]]) -> None:
    ingress, egress = network_edges(objects)
    assert (ingress | egress) - ALLOWED_EDGES == set()
    # Each gRPC edge is open at both ends; the cluster-external ones at our end.
    for src, dst in GRPC_EDGES:
        assert (src, dst, PORT_GRPC) in ingress, (src, dst)
        assert (src, dst, PORT_GRPC) in egress, (src, dst)
    assert {e for e in egress if e[1] in ("dns", "otlp", "postgres")} == {
        e for e in ALLOWED_EDGES if e[1] in ("dns", "otlp", "postgres")
    }
    assert ("prometheus", "medsettle-servers", PORT_METRICS) in ingress
    # Only the gateway may call clearing (a hospital's own reconciliation, the partners'
    # methods), and nobody filing but eligibility and the gateway (the bureaus' methods).
    assert {e[0] for e in ingress | egress if e[1] == "clearing"} == {"gateway"}
    assert {e[0] for e in ingress | egress if e[1] == "filing"} == {"eligibility", "gateway"}
    # The gateway's edges are the services the access table opens a method of to hospitals or
    # to partners (bureaus, operator).
    from libs.platform.access import RULES

    render = _load_render()
    opened = {render.UPSTREAM_OF[m.split("/")[1]] for m, r in RULES.items() if r.hospital_facing or r.partner_facing}
    assert {dst for src, dst, _ in egress if src == "gateway" and dst in SERVICES} == opened


# --------------------------------------------------------------------------- gateway


STANDARD_TOOLS = {
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
}


LISTENER_OF = {"hospitals-grpc": "hospital_facing", "partners-grpc": "partner_facing"}


def test_grpc_routes_match_exactly_the_methods_the_access_table_opens_to_each_listener(
    objects: list[dict[str, Any]],
) -> None:
    """hospitals-grpc: exactly the hospitals' methods; partners-grpc: exactly the bureaus' and the
    operator's; each route on its listener's hostname, with no other parent."""
    from libs.platform.access import RULES

    render = _load_render()
    (gateway,) = of_kind(objects, "Gateway")
    hostname_of = {listener["name"]: listener["hostname"] for listener in gateway["spec"]["listeners"]}
    assert set(hostname_of) == set(LISTENER_OF)
    routed: dict[str, set[tuple[str, str]]] = {name: set() for name in LISTENER_OF}
    for route in of_kind(objects, "GRPCRoute"):
        (parent,) = route["spec"]["parentRefs"]
        section = parent["sectionName"]
        assert route["spec"]["hostnames"] == [hostname_of[section]], route["metadata"]["name"]
        assert route["metadata"]["labels"]["medsettle.io/listener"] == section.split("-")[0]
        for rule in route["spec"]["rules"]:
            (backend,) = rule["backendRefs"]
            assert backend.get("kind", "Service") == "Service"
            for match in rule["matches"]:
                method = match["method"]
                assert method.get("type", "Exact") == "Exact", method
                if method["service"] in STANDARD_TOOLS:
                    assert "method" not in method and backend["name"] == "settlement"
                    continue
                assert method.get("method"), f"{method['service']}: a whole service is routed"
                assert render.UPSTREAM_OF[method["service"]] == backend["name"], method
                routed[section].add((method["service"], method["method"]))
    for section, facing in LISTENER_OF.items():
        opened = {tuple(m.strip("/").split("/")) for m, r in RULES.items() if getattr(r, facing)}
        assert routed[section] == opened, section
    # the two sets differ: a hospital-only method is not on the partner listener, and back
    settle = ("medsettle.settlement.v1.SettlementService", "Settle")
    create = ("medsettle.filing.v1.FilingService", "CreateFiling")
    assert settle in routed["hospitals-grpc"] and settle not in routed["partners-grpc"]
    assert create in routed["partners-grpc"] and create not in routed["hospitals-grpc"]


def test_the_gateway_routes_are_generated_from_the_access_table() -> None:
    proc = subprocess.run(
        [sys.executable, str(K8S.parent / "scripts" / "gen_access.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stderr}: run scripts/gen_access.py"


def test_the_gateway_requires_client_certificates(objects: list[dict[str, Any]]) -> None:
    (gateway,) = of_kind(objects, "Gateway")
    spec = gateway["spec"]
    assert spec["gatewayClassName"]
    validation = spec["tls"]["frontend"]["default"]["validation"]
    assert validation.get("mode", "AllowValidOnly") == "AllowValidOnly"
    assert validation["caCertificateRefs"] and all(r["kind"] == "ConfigMap" for r in validation["caCertificateRefs"])
    for port_cfg in spec["tls"]["frontend"].get("perPort", []):
        assert port_cfg["tls"]["validation"].get("mode", "AllowValidOnly") == "AllowValidOnly"
    # Each listener its own client CA: hospitals the default, partners their port's own.
    port_of = {listener["name"]: listener["port"] for listener in spec["listeners"]}
    assert port_of["hospitals-grpc"] != port_of["partners-grpc"]
    per_port = {c["port"]: c["tls"]["validation"]["caCertificateRefs"] for c in spec["tls"]["frontend"]["perPort"]}
    assert port_of["hospitals-grpc"] not in per_port
    assert [r["name"] for r in validation["caCertificateRefs"]] == ["medsettle-hospital-ca"]
    partner_refs = per_port[port_of["partners-grpc"]]
    assert [(r["kind"], r["name"]) for r in partner_refs] == [("ConfigMap", "medsettle-partner-client-ca")]
    for listener in spec["listeners"]:
        assert listener["protocol"] == "HTTPS", "every listener terminates TLS"
        assert listener["tls"]["mode"] == "Terminate"
        assert listener["allowedRoutes"]["kinds"] == [{"group": GATEWAY_API_GROUP, "kind": "GRPCRoute"}]


def test_routes_set_the_institution_from_the_certificate_never_from_the_client(
    objects: list[dict[str, Any]],
) -> None:
    snippets = by_name(objects, "SnippetsFilter")
    for route in of_kind(objects, "GRPCRoute"):
        partner = route["spec"]["parentRefs"][0]["sectionName"] == "partners-grpc"
        for rule in route["spec"]["rules"]:
            ok = False
            for f in rule.get("filters", []):
                if f["type"] == "RequestHeaderModifier":
                    ok |= INSTITUTION_HEADER in f["requestHeaderModifier"].get("remove", [])
                elif f["type"] == "ExtensionRef" and f["extensionRef"]["kind"] == "SnippetsFilter":
                    sf = snippets[f["extensionRef"]["name"]]
                    values = {s["context"]: s["value"] for s in sf["spec"]["snippets"]}
                    ok |= "$ssl_client_s_dn" in values["http"] and (
                        f"grpc_set_header {INSTITUTION_HEADER} " in values["http.server.location"]
                    )
                    # a partner route names the caller in the principal header, from the certificate
                    # only, and never passes an institution; a hospital route never a principal
                    location = values["http.server.location"]
                    if partner:
                        ok &= "grpc_set_header x-medsettle-principal $medsettle_partner;" in location
                        ok &= f'grpc_set_header {INSTITUTION_HEADER} "";' in location
                    else:
                        ok &= 'grpc_set_header x-medsettle-principal "";' in location
            assert ok, f"GRPCRoute/{route['metadata']['name']} may pass a client-supplied {INSTITUTION_HEADER}"


# --------------------------------------------------------------------------- local gateway (nginx)


def _load_render() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("medsettle_local_gateway_render", K8S / "local-gateway" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hospital CA, a gateway certificate for localhost, a hospital client certificate."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (d / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def make_ca(stem: str, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write(stem, ca, ca_key)
        return ca, ca_key

    hospital_ca = make_ca("ca", "medsettle test hospital CA")
    partner_ca = make_ca("partner_ca", "medsettle test partner CA")

    def leaf(stem: str, cn: str, server: bool, issuer: tuple[x509.Certificate, Any] = hospital_ca) -> None:
        ca, ca_key = issuer
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        write(stem, builder.sign(ca_key, hashes.SHA256()), key)

    leaf("gateway", "localhost", server=True)
    leaf("hospital", "H11010500001", server=False)
    # partners: the CN is the whole URI (docs/access.md)
    leaf("bureau", "urn:medsettle:bureau:treatment:310100", server=False, issuer=partner_ca)
    # a partner-CA certificate naming a hospital: the partner listener passes no identity on
    leaf("partner_hospital", "urn:medsettle:hospital:H11010500001", server=False, issuer=partner_ca)
    return {p.stem + p.suffix.replace(".", "_"): p for p in d.iterdir()}


def _gateway_values(
    prefix: Path, pki: dict[str, Path], port: int, upstreams: dict[str, str], partner_port: int = 0
) -> dict[str, Any]:
    return {
        "listen_port": port,
        "partner_listen_port": partner_port or _free_port(),
        "partner_client_ca": pki["partner_ca_crt"],
        "prefix": prefix,
        "tls_cert": pki["gateway_crt"],
        "tls_key": pki["gateway_key"],
        "client_ca": pki["ca_crt"],
        "filing_upstream": upstreams["filing"],
        "eligibility_upstream": upstreams["eligibility"],
        "settlement_upstream": upstreams["settlement"],
        "clearing_upstream": upstreams["clearing"],
    }


def test_render_refuses_missing_and_unknown_placeholders(tmp_path: Path) -> None:
    render = _load_render()
    template = K8S / "local-gateway" / "nginx.conf.template"
    expected = {
        "listen_port",
        "prefix",
        "tls_cert",
        "tls_key",
        "client_ca",
        "filing_upstream",
        "eligibility_upstream",
        "settlement_upstream",
        "clearing_upstream",
        "partner_listen_port",
        "partner_client_ca",
    }
    assert render.placeholders(template) == expected
    with pytest.raises(KeyError):
        render.render(template, listen_port=1)
    with pytest.raises(KeyError):
        render.render(template, **dict.fromkeys(expected, "x"), bogus="y")
    with pytest.raises(ValueError):
        render.render(template, **{**dict.fromkeys(expected, "x"), "prefix": "/tmp; evil"})
    text = render.render(template, **dict.fromkeys(expected, "x"))
    assert "@@" not in text and "$ssl_client_s_dn" in text


def test_local_gateway_config_passes_the_nginx_syntax_check(tmp_path: Path, pki: dict[str, Path]) -> None:
    nginx = _nginx()
    render = _load_render()
    conf = tmp_path / "nginx.conf"
    ups = dict.fromkeys(("filing", "eligibility", "settlement", "clearing"), "127.0.0.1:50051")
    conf.write_text(render.render(render.TEMPLATE, **_gateway_values(tmp_path, pki, _free_port(), ups)))
    proc = subprocess.run(
        [nginx, "-t", "-q", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def partner_port() -> int:
    return _free_port()


@pytest.fixture
def local_gateway(
    tmp_path: Path, pki: dict[str, Path], partner_port: int
) -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """nginx in front of four recording gRPC backends; yields (hospital listener address, calls
    seen as (backend, method, x-medsettle-institution)); the partner listener is on
    ``partner_port`` and its calls are recorded in ``seen`` with the principal header instead."""
    pytest.importorskip("grpc")
    import grpc

    nginx = _nginx()
    render = _load_render()
    seen: list[tuple[str, str, str | None]] = []

    def backend(tag: str) -> Any:
        class Recorder(grpc.GenericRpcHandler):  # type: ignore[misc]
            def service(self, details: Any) -> Any:
                metadata = dict(details.invocation_metadata)

                def handle(request: bytes, context: Any) -> bytes:
                    who = metadata.get(INSTITUTION_HEADER) or metadata.get("x-medsettle-principal")
                    seen.append((tag, details.method, who))
                    return b"ok"

                return grpc.unary_unary_rpc_method_handler(handle)

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((Recorder(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        return server, f"127.0.0.1:{port}"

    servers = {tag: backend(tag) for tag in ("filing", "eligibility", "settlement", "clearing")}
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render.render(
            render.TEMPLATE,
            **_gateway_values(tmp_path, pki, port, {t: a for t, (_, a) in servers.items()}, partner_port),
        )
    )
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", partner_port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"nginx did not start: {err}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", seen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for server, _ in servers.values():
            server.stop(0)


def _all_methods() -> list[str]:
    from tests.unit.test_access import all_methods

    return all_methods()


def test_local_gateway_routes_exactly_the_hospitals_methods_and_sets_the_institution_from_the_certificate(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]], pki: dict[str, Path]
) -> None:
    import grpc

    from libs.platform.access import RULES

    render = _load_render()
    address, seen = local_gateway
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca_crt"].read_bytes(),
        private_key=pki["hospital_key"].read_bytes(),
        certificate_chain=pki["hospital_crt"].read_bytes(),
    )
    hospital = [m for m in _all_methods() if RULES[m].hospital_facing]
    assert render.hospital_methods() == [m for m in RULES if RULES[m].hospital_facing]
    assert "/medsettle.settlement.v1.SettlementService/Settle" in hospital
    forged = [(INSTITUTION_HEADER, "H99999999999"), ("x-medsettle-principal", "urn:medsettle:operator:national")]
    with grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        for method in [*hospital, "/grpc.health.v1.Health/Check"]:
            assert channel.unary_unary(method)(b"", metadata=forged, timeout=5) == b"ok", method
        for method in [
            *(m for m in _all_methods() if m not in hospital),
            "/medsettle.clearing.v1.ClearingAdminService/RunMonthlyClearing",
            "/medsettle.unknown.v1.Nope/Do",
        ]:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method)(b"", metadata=forged, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            assert err.value.details() == "method not routed to hospitals", method
    expected = [(render.UPSTREAM_OF[m.split("/")[1]], m, "H11010500001") for m in hospital]
    assert seen == [*expected, ("settlement", "/grpc.health.v1.Health/Check", "H11010500001")]


def test_local_gateway_refusals_are_well_formed_grpc_responses(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]], pki: dict[str, Path]
) -> None:
    """At the HTTP level (curl over HTTP/2): status 200, content-type application/grpc and the
    grpc-status / grpc-message a strict client reads."""
    curl = shutil.which("curl")
    if curl is None:
        _missing("curl")
    address, seen = local_gateway
    port = address.rsplit(":", 1)[1]
    common = [
        str(curl), "-sS", "--http2", "-o", "/dev/null", "-D", "-", "-X", "POST",
        "-H", "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "",
        "--cacert", str(pki["ca_crt"]), "--resolve", f"localhost:{port}:127.0.0.1",
    ]  # fmt: skip
    cert = ["--cert", str(pki["hospital_crt"]), "--key", str(pki["hospital_key"])]
    for extra, path, status in (
        (cert, "/medsettle.clearing.v1.ClearingService/RunMonthlyClearing", "12"),
        (cert, "/medsettle.filing.v1.FilingService/WatchFilings", "12"),
        ([], "/medsettle.settlement.v1.SettlementService/Settle", "16"),
    ):
        out = subprocess.run(
            [*common, *extra, f"https://localhost:{port}{path}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        head = out.stdout.lower()
        assert out.returncode == 0, out.stderr
        assert head.startswith("http/2 200"), head
        assert "content-type: application/grpc" in head, head
        assert f"grpc-status: {status}" in head and "grpc-message: " in head, head
    assert seen == []


def test_local_gateway_refuses_with_grpcurl(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]], pki: dict[str, Path], tmp_path: Path
) -> None:
    """grpc-go (grpcurl) reads the gateway's own refusals as statuses."""
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    if not os.access(grpcurl, os.X_OK):
        _missing("grpcurl")
    from google.protobuf import descriptor_pb2

    from medsettle.clearing.v1 import clearing_pb2
    from medsettle.settlement.v1 import settlement_pb2

    files: dict[str, Any] = {}

    def add(fd: Any) -> None:
        for dep in fd.dependencies:
            add(dep)
        if fd.name not in files:
            proto = descriptor_pb2.FileDescriptorProto()
            fd.CopyToProto(proto)
            files[fd.name] = proto

    add(clearing_pb2.DESCRIPTOR)
    add(settlement_pb2.DESCRIPTOR)
    protoset = tmp_path / "medsettle.protoset"
    protoset.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString())
    address, seen = local_gateway
    port = address.rsplit(":", 1)[1]
    base = [grpcurl, "-cacert", str(pki["ca_crt"]), "-authority", "localhost", "-max-time", "10"]
    cert = ["-cert", str(pki["hospital_crt"]), "-key", str(pki["hospital_key"])]
    for extra, method, code in (
        (cert, "medsettle.clearing.v1.ClearingService/RunMonthlyClearing", "Unimplemented"),
        ([], "medsettle.settlement.v1.SettlementService/Settle", "Unauthenticated"),
    ):
        out = subprocess.run(
            [*base, *extra, "-d", "{}", "-protoset", str(protoset), f"127.0.0.1:{port}", method],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        text = out.stdout + out.stderr
        assert f"Code: {code}" in text, text
    assert seen == []


def test_local_gateway_refuses_clients_without_a_certificate(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]], pki: dict[str, Path]
) -> None:
    import grpc

    address, seen = local_gateway
    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca_crt"].read_bytes())
    with (
        grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", "localhost")]) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        channel.unary_unary("/medsettle.settlement.v1.SettlementService/Settle")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert seen == []


def test_local_gateway_partner_listener_routes_exactly_the_partners_methods_with_their_own_ca(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]], pki: dict[str, Path], partner_port: int
) -> None:
    """A bureau certificate (partner CA) reaches exactly the bureaus' and the operator's methods on
    the partner listener, named by its CN in x-medsettle-principal (no institution header), and
    is refused on the hospital listener; a hospital certificate is refused on the partner
    listener; every refusal is a gRPC status."""
    import grpc

    from libs.platform.access import RULES

    render = _load_render()
    address, seen = local_gateway
    partner_address = f"127.0.0.1:{partner_port}"
    bureau_uri = "urn:medsettle:bureau:treatment:310100"

    def creds(who: str) -> Any:
        return grpc.ssl_channel_credentials(
            root_certificates=pki["ca_crt"].read_bytes(),
            private_key=pki[f"{who}_key"].read_bytes(),
            certificate_chain=pki[f"{who}_crt"].read_bytes(),
        )

    options = [("grpc.ssl_target_name_override", "localhost")]
    partner = [m for m in _all_methods() if RULES[m].partner_facing]
    assert render.partner_methods() == [m for m in RULES if RULES[m].partner_facing]
    assert "/medsettle.filing.v1.FilingService/CreateFiling" in partner
    assert "/medsettle.settlement.v1.SettlementService/Settle" not in partner
    forged = [(INSTITUTION_HEADER, "H99999999999"), ("x-medsettle-principal", "urn:medsettle:operator:national")]
    with grpc.secure_channel(partner_address, creds("bureau"), options=options) as channel:
        for method in partner:
            assert channel.unary_unary(method)(b"", metadata=forged, timeout=5) == b"ok", method
        for method in [m for m in _all_methods() if m not in partner]:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method)(b"", metadata=forged, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
            assert err.value.details() == "method not routed to partners", method
    assert seen == [(render.UPSTREAM_OF[m.split("/")[1]], m, bureau_uri) for m in partner]
    seen.clear()
    # a partner-CA certificate whose CN is no bureau or operator: routed, but no identity passed
    with grpc.secure_channel(partner_address, creds("partner_hospital"), options=options) as channel:
        assert channel.unary_unary(partner[0])(b"", metadata=forged, timeout=5) == b"ok"
    assert seen == [(render.UPSTREAM_OF[partner[0].split("/")[1]], partner[0], None)]
    seen.clear()
    # the bureau on the hospital listener, the hospital on the partner listener: refused at the edge
    for target, who, method in (
        (address, "bureau", "/medsettle.eligibility.v1.EligibilityService/GetInstitution"),
        (partner_address, "hospital", "/medsettle.eligibility.v1.EligibilityService/GetInstitution"),
        (partner_address, "hospital", "/medsettle.filing.v1.FilingService/CreateFiling"),
    ):
        with grpc.secure_channel(target, creds(who), options=options) as channel:
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method)(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (target, who)
    assert seen == []


def test_local_gateway_partner_refusals_with_grpcurl(
    local_gateway: tuple[str, list[tuple[str, str, str | None]]],
    pki: dict[str, Path],
    partner_port: int,
    tmp_path: Path,
) -> None:
    """grpc-go (grpcurl) reads the partner listener's refusals as statuses too."""
    grpcurl = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    if not os.access(grpcurl, os.X_OK):
        _missing("grpcurl")
    from google.protobuf import descriptor_pb2

    from medsettle.settlement.v1 import settlement_pb2

    files: dict[str, Any] = {}

    def add(fd: Any) -> None:
        for dep in fd.dependencies:
            add(dep)
        if fd.name not in files:
            proto = descriptor_pb2.FileDescriptorProto()
            fd.CopyToProto(proto)
            files[fd.name] = proto

    add(settlement_pb2.DESCRIPTOR)
    protoset = tmp_path / "medsettle.protoset"
    protoset.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString())
    _, seen = local_gateway
    base = [grpcurl, "-cacert", str(pki["ca_crt"]), "-authority", "localhost", "-max-time", "10"]
    for who, code in (("bureau", "Unimplemented"), ("hospital", "Unauthenticated")):
        out = subprocess.run(
            [
                *base, "-cert", str(pki[f"{who}_crt"]), "-key", str(pki[f"{who}_key"]), "-d", "{}",
                "-protoset", str(protoset), f"127.0.0.1:{partner_port}",
                "medsettle.settlement.v1.SettlementService/Settle",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        text = out.stdout + out.stderr
        assert f"Code: {code}" in text, text
    assert seen == []


# --------------------------------------------------------------------------- dashboard


def test_the_dashboard_charts_the_settlement_metrics() -> None:
    board = json.loads((K8S / "observability" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t.get("expr", "") for p in board["panels"] for t in p.get("targets", []))
    for metric in (
        "medsettle_rpc_duration_seconds_bucket",
        "medsettle_settlements_total",
        "medsettle_fund_paid_fen_total",
        "medsettle_feed_lag_events",
        "medsettle_feed_lag_seconds",
    ):
        assert metric in exprs, metric


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
