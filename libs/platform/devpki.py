"""Development X.509 material (tests and ``medsettle dev-certs``): a CA, server certificates for
loopback, client certificates that carry a medsettle identity as their URI SAN
(docs/access.md), an expired one, and one signed by a CA nobody trusts.

    pki = Pki(tmp_path)
    server = pki.server("svc-settlement", uri="urn:medsettle:service:settlement")  # + localhost, 127.0.0.1, ::1
    hospital = pki.client("urn:medsettle:hospital:H31010400001")   # URI SAN; CN H31010400001
    legacy = pki.client("H31010400001")       # CN = institution code, and its hospital URI SAN
    nobody = pki.client("H31010400001", uri=None)  # a CN only: the services refuse it
    pki.ca_file                               # trust anchor to hand to servers and clients

Every certificate is written as PEM (``<name>.crt`` / ``<name>.key``) next to the CA, so the
paths can go straight into MEDSETTLE_TLS_* / MEDSETTLE_PEER_* settings or an nginx config.
Never for production: keys are unencrypted and the CA lives 30 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_KEY_CURVE = ec.SECP256R1()  # fast to generate; every TLS stack in play accepts it
_AUTO = "auto"
_INSTITUTION_CODE = re.compile(r"[A-Z][A-Z0-9]{1,31}")


def _cn_and_uri(name: str, uri: str | None) -> tuple[str, str | None]:
    """``urn:medsettle:...`` names give CN = their last part; a bare institution code gets its
    hospital URI unless ``uri`` says otherwise."""
    if name.startswith("urn:"):
        return name.rsplit(":", 1)[-1], (name if uri == _AUTO else uri)
    if uri == _AUTO:
        return name, (f"urn:medsettle:hospital:{name}" if _INSTITUTION_CODE.fullmatch(name) else None)
    return name, uri


def _stem(name: str) -> str:
    return name.removeprefix("urn:medsettle:").replace(":", "-")


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert_file.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key_file.read_bytes()


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsettle development"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class Pki:
    """One certificate authority in ``directory``; issues leaf certificates on demand."""

    def __init__(self, directory: Path, ca_name: str = "medsettle-test-ca") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(_KEY_CURVE)
        now = dt.datetime.now(dt.UTC)
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ca_name))
            .issuer_name(_name(ca_name))
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_file = self.dir / f"{ca_name}.crt"
        self.ca_file.write_bytes(self._ca_cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    def _issue(
        self,
        file_stem: str,
        cn: str,
        *,
        server: bool,
        client: bool,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        uri: str | None = None,
    ) -> Issued:
        key = ec.generate_private_key(_KEY_CURVE)
        now = dt.datetime.now(dt.UTC)
        usages = [
            u for u, on in ((ExtendedKeyUsageOID.SERVER_AUTH, server), (ExtendedKeyUsageOID.CLIENT_AUTH, client)) if on
        ]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(hours=1))
            .not_valid_after(not_after or now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
        )
        names: list[x509.GeneralName] = []
        if server:
            names += [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
        if uri:
            names.append(x509.UniformResourceIdentifier(uri))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_file, key_file = self.dir / f"{file_stem}.crt", self.dir / f"{file_stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return Issued(cert_file, key_file)

    def server(self, name: str, *, uri: str | None = None) -> Issued:
        """A server certificate for loopback (SAN localhost, 127.0.0.1, ::1, and ``uri``); also
        usable as a client certificate, as a service presents the same identity to its peers."""
        return self._issue(f"server-{_stem(name)}", name, server=True, client=True, uri=uri)

    def client(self, name: str, *, uri: str | None = _AUTO, cn: str | None = None) -> Issued:
        """A client certificate for ``name`` (a medsettle URI, or a CN; see the module doc);
        ``cn`` overrides the subject CN (a partner certificate's CN is its whole URI)."""
        default_cn, san = _cn_and_uri(name, uri)
        return self._issue(f"client-{_stem(name)}", cn or default_cn, server=False, client=True, uri=san)

    def expired_client(self, name: str) -> Issued:
        now = dt.datetime.now(dt.UTC)
        cn, san = _cn_and_uri(name, _AUTO)
        return self._issue(
            f"expired-{_stem(name)}",
            cn,
            server=False,
            client=True,
            not_before=now - dt.timedelta(days=10),
            not_after=now - dt.timedelta(days=1),
            uri=san,
        )


# What ``medsettle dev-certs`` writes: file stem -> (identity URI, also a server certificate).
# The bureaus' and the operator's come from the partner CA (PARTNER_ROLES), the rest from ca.crt.
DEV_IDENTITIES: dict[str, tuple[str, bool]] = {
    "gateway": ("urn:medsettle:gateway:local", True),
    "hospital-H31010400001": ("urn:medsettle:hospital:H31010400001", False),
    "hospital-H31010400002": ("urn:medsettle:hospital:H31010400002", False),
    "pharmacy-P31010400009": ("urn:medsettle:pharmacy:P31010400009", False),
    "bureau-treatment-310100": ("urn:medsettle:bureau:treatment:310100", False),
    "bureau-insured-110100": ("urn:medsettle:bureau:insured:110100", False),
    "bureau-insured-510100": ("urn:medsettle:bureau:insured:510100", False),
    "operator-national": ("urn:medsettle:operator:national", False),
    "app-P110100000001": ("urn:medsettle:app:P110100000001", False),
    **{
        f"service-{s}": (f"urn:medsettle:service:{s}", True)
        for s in ("filing", "eligibility", "settlement", "clearing")
    },
}


PARTNER_URI_PREFIXES = ("urn:medsettle:bureau:", "urn:medsettle:operator:")


def is_partner(uri: str) -> bool:
    """A bureau or the operator: certified by the partner CA, reaching the partner listener."""
    return uri.startswith(PARTNER_URI_PREFIXES)


def write_dev_certs(out_dir: Path) -> list[Path]:
    """Two development CAs and one certificate per role in ``out_dir``, named ``<stem>.crt`` /
    ``<stem>.key`` (see :data:`DEV_IDENTITIES`):

    * ``ca.crt`` signs the hospitals, pharmacies, the app, the gateway and the services (CN = the
      URI's last part: the hospital listener reads the institution code from it);
    * ``partner-ca.crt`` signs the bureaus and the operator (CN = the whole URI: the partner
      listener passes it on as the caller);
    * ``all-ca.crt`` is both, for a server that terminates mTLS itself
      (``MEDSETTLE_TLS_CLIENT_CA_FILE``) and takes calls from every role.

    Every certificate also carries its URI as URI SAN. Servers' certificates (the gateway, the
    services) are also valid for localhost, 127.0.0.1 and ::1."""
    pki = Pki(out_dir, ca_name="ca")
    partners = Pki(out_dir, ca_name="partner-ca")
    bundle = out_dir / "all-ca.crt"
    bundle.write_bytes(pki.ca_pem + partners.ca_pem)
    written = [pki.ca_file, partners.ca_file, bundle]
    for stem, (uri, server) in DEV_IDENTITIES.items():
        if is_partner(uri):
            issued = partners._issue(stem, uri, server=server, client=True, uri=uri)
        else:
            issued = pki._issue(stem, uri.rsplit(":", 1)[-1], server=server, client=True, uri=uri)
        written += [issued.cert_file, issued.key_file]
    return written
