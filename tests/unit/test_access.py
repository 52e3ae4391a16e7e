"""The access table covers every method of every service; identities parse strictly."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import medsettle
from libs.core.errors import DomainError, Reason
from libs.platform import access, identity
from libs.platform.identity import Principal, Role

ROOT = Path(__file__).resolve().parents[2]


def all_methods() -> list[str]:
    """Every RPC of every service in the contracts, from the descriptors."""
    methods = []
    for mod in pkgutil.walk_packages(medsettle.__path__, "medsettle."):
        if not mod.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(mod.name).DESCRIPTOR
        for service in descriptor.services_by_name.values():
            methods += [f"/{service.full_name}/{m.name}" for m in service.methods]
    return sorted(methods)


def test_the_contracts_have_services() -> None:
    services = {m.split("/")[1] for m in all_methods()}
    assert {
        "medsettle.filing.v1.FilingService",
        "medsettle.eligibility.v1.EligibilityService",
        "medsettle.settlement.v1.SettlementService",
        "medsettle.settlement.v1.ManualClaimService",
        "medsettle.clearing.v1.ClearingService",
    } <= services


def test_every_method_of_every_service_has_a_rule() -> None:
    missing = [m for m in all_methods() if access.rule_for(m) is None]
    assert not missing, f"methods without a rule in libs/platform/access.py RULES: {missing}"


def test_every_rule_names_a_real_method_and_real_request_fields() -> None:
    from google.protobuf import descriptor_pool

    methods = set(all_methods())
    assert set(access.RULES) <= methods, set(access.RULES) - methods
    pool = descriptor_pool.Default()
    for method, rule in access.RULES.items():
        assert rule.roles, method
        assert Role.GATEWAY not in rule.roles, method
        service, name = method.strip("/").split("/")
        request = pool.FindServiceByName(service).methods_by_name[name].input_type
        for role, path in rule.scope_fields().items():
            assert role in rule.roles, (method, role)
            message = request
            for part in path.split("."):
                field = message.fields_by_name.get(part)
                assert field is not None, f"{method}: no field {path}"
                message = field.message_type
            assert message is None, f"{method}: {path} is not a string field"


def test_a_method_without_a_rule_is_refused_for_every_caller() -> None:
    for p in (None, Principal(Role.OPERATOR, "national"), identity.hospital("H31010400001")):
        with pytest.raises(DomainError) as exc:
            access.authorise("/medsettle.filing.v1.FilingService/DeleteEverything", p, object())
        assert exc.value.reason is Reason.METHOD_NOT_OPEN


def test_docs_access_md_shows_the_table() -> None:
    doc = (ROOT / "docs" / "access.md").read_text(encoding="utf-8")
    assert access.START + access.render_markdown() + access.END in doc, (
        "docs/access.md is stale: python -m libs.platform.access --write docs/access.md"
    )


@pytest.mark.parametrize(
    ("urn", "expected"),
    [
        ("urn:medsettle:hospital:H31010400001", Principal(Role.INSTITUTION, "H31010400001", "hospital")),
        ("urn:medsettle:pharmacy:P31010400009", Principal(Role.INSTITUTION, "P31010400009", "pharmacy")),
        ("urn:medsettle:bureau:treatment:310100", Principal(Role.TREATMENT_BUREAU, "310100")),
        ("urn:medsettle:bureau:insured:11", Principal(Role.INSURED_BUREAU, "11")),
        ("urn:medsettle:operator:national", Principal(Role.OPERATOR, "national")),
        ("urn:medsettle:service:clearing", Principal(Role.SERVICE, "clearing")),
        ("urn:medsettle:app:P110100000001", Principal(Role.APP, "P110100000001")),
        ("urn:medsettle:gateway:edge", Principal(Role.GATEWAY, "edge")),
    ],
)
def test_identities_round_trip(urn: str, expected: Principal) -> None:
    assert identity.parse_urn(urn) == expected
    assert expected.urn == urn


@pytest.mark.parametrize(
    "urn",
    [
        "H31010400001",
        "urn:medsettle:hospital:",
        "urn:medsettle:hospital:h3101",
        "urn:medsettle:hospital:H31010400001:extra",
        "urn:medsettle:bureau:insured:1101",
        "urn:medsettle:bureau:other:110100",
        "urn:medsettle:service:billing",
        "urn:other:hospital:H31010400001",
        "urn:medsettle:hospital:H3101 0400001",
    ],
)
def test_malformed_identities_are_not_identities(urn: str) -> None:
    assert identity.parse_urn(urn) is None


def test_two_identity_headers_are_refused() -> None:
    for pairs in (
        [("x-medsettle-institution", "H31010400001"), ("x-medsettle-principal", "urn:medsettle:operator:national")],
        [("x-medsettle-institution", "H31010400001"), ("x-medsettle-institution", "H31010400001")],
    ):
        with pytest.raises(DomainError) as exc:
            identity.from_headers(pairs)
        assert exc.value.reason is Reason.CALLER_IDENTITY_AMBIGUOUS


def test_a_header_cannot_claim_to_be_the_gateway_or_nonsense() -> None:
    for value in ("urn:medsettle:gateway:edge", "urn:medsettle:nobody:x", "operator"):
        with pytest.raises(DomainError) as exc:
            identity.from_headers([("x-medsettle-principal", value)])
        assert exc.value.reason is Reason.CALLER_IDENTITY_INVALID


def test_bureaus_cover_their_region_or_province_only() -> None:
    city = Principal(Role.INSURED_BUREAU, "110100")
    province = Principal(Role.INSURED_BUREAU, "11")
    assert city.covers_region("110100") and not city.covers_region("110200") and not city.covers_region("11")
    assert province.covers_region("110200") and province.covers_region("11") and not province.covers_region("310100")
    assert not identity.hospital("H31010400001").covers_region("310100")
    assert not city.covers_region("")


def test_request_ids_are_scoped_to_the_caller() -> None:
    a, b = identity.hospital("H31010400001"), identity.hospital("H31010400002")
    assert identity.scoped_request_id("r-1", a) != identity.scoped_request_id("r-1", b)
    assert identity.unscoped_request_id(identity.scoped_request_id("r/1", a)) == "r/1"
    long = "x" * 128
    assert len(identity.scoped_request_id(long, a)) <= 128
    assert identity.scoped_request_id(long, a) != identity.scoped_request_id(long + "y", a)


def test_certificate_identity_is_the_uri_san_never_the_subject(tmp_path: Path) -> None:
    from tests.pki import Pki

    pki = Pki(tmp_path)
    assert identity.from_certificate(pki.client("urn:medsettle:hospital:H31010400001").cert_pem) == identity.hospital(
        "H31010400001"
    )
    # a CN that looks like an institution code, without a URI SAN, is nobody
    with pytest.raises(DomainError) as exc:
        identity.from_certificate(pki.client("H31010400001", uri=None).cert_pem)
    assert exc.value.reason is Reason.CALLER_IDENTITY_INVALID


def test_id_numbers_are_masked() -> None:
    assert identity.mask_id_number("110105195403120027") == "110105********0027"


def test_require_mtls_refuses_to_start_without_client_certificates(tmp_path: Path) -> None:
    from libs.platform.devpki import Pki
    from libs.platform.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="MEDSETTLE_REQUIRE_MTLS"):
        load_settings(require_mtls=True)
    pki = Pki(tmp_path)
    server = pki.server("svc", uri="urn:medsettle:service:settlement")
    with pytest.raises(SettingsError, match="MEDSETTLE_REQUIRE_MTLS"):
        load_settings(require_mtls=True, tls_cert_file=server.cert_file, tls_key_file=server.key_file)
    ok = load_settings(
        require_mtls=True, tls_cert_file=server.cert_file, tls_key_file=server.key_file, tls_client_ca_file=pki.ca_file
    )
    assert ok.require_mtls


def test_dev_certs_sign_partners_with_their_own_ca(tmp_path: Path) -> None:
    """``medsettle dev-certs``: the bureaus and the operator under partner-ca.crt with their whole
    URI as CN (what the gateway's partner listener passes on), everyone else under ca.crt; every
    certificate names its identity as URI SAN; all-ca.crt holds both CAs."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import NameOID

    from libs.platform.devpki import DEV_IDENTITIES, write_dev_certs
    from services.cli import main

    assert main(["dev-certs", str(tmp_path)]) == 0
    written = {p.name for p in tmp_path.iterdir()}
    assert {"ca.crt", "partner-ca.crt", "all-ca.crt"} <= written
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    partner_ca = x509.load_pem_x509_certificate((tmp_path / "partner-ca.crt").read_bytes())
    assert len(x509.load_pem_x509_certificates((tmp_path / "all-ca.crt").read_bytes())) == 2
    partners = 0
    for stem, (uri, _) in DEV_IDENTITIES.items():
        pem = (tmp_path / f"{stem}.crt").read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        role = identity.parse_urn(uri)
        partner = role is not None and role.role in access.PARTNER_ROLES
        issuer, other = (partner_ca, ca) if partner else (ca, partner_ca)
        cert.verify_directly_issued_by(issuer)
        with pytest.raises((ValueError, InvalidSignature)):
            cert.verify_directly_issued_by(other)
        assert cn == (uri if partner else uri.rsplit(":", 1)[-1]), stem
        if role is not None:
            assert identity.from_certificate(pem) == role, stem
        partners += partner
    assert partners >= 3  # a treatment-place bureau, an insured-place bureau, the operator
    assert len(write_dev_certs(tmp_path / "again")) == 3 + 2 * len(DEV_IDENTITIES)
