"""Signing identity for C2PA: the user's own certificate chain and key, or a development CA made on first use.

The development CA lives in `settings.home / "keys"` (outside the repository; private keys are written
0600): `ca.pem` / `ca.key` (a self-signed root, P-256) and `signer.pem` (end-entity certificate + CA,
in that order) / `signer.key`. The end-entity certificate carries what C2PA requires of a claim
signer: not a CA, key usage digitalSignature (critical), an extended key usage of emailProtection,
subject and authority key identifiers. A development CA is not a trust anchor unless the user makes it one
(`CONJURE_C2PA_TRUST_ANCHORS=<home>/keys/ca.pem`), so by default its manifests read as `valid`.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEV_CA_FILES = ("ca.pem", "ca.key", "signer.pem", "signer.key")
_VALID_DAYS = 3650


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes         # end-entity certificate first, then intermediates (and optionally the root)
    key_pem: bytes
    alg: str                 # C2PA signing algorithm: es256, es384, es512, ps256, ed25519
    source: str              # "dev-ca" or the certificate's path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "conjure (development)")])


def _key_usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                         crl_sign=not sign, encipher_only=False, decipher_only=False)


def _cert(subject: str, issuer: x509.Name, public_key, issuer_key, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(public_key)
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(_key_usage(sign=not ca), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if not ca:
        b = (b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False))
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_dev_ca(folder: Path) -> Path:
    """Create the development CA and its signer in `folder` unless they exist; safe across processes
    (built in a temporary folder beside it, then renamed into place; the first rename wins)."""
    folder = Path(folder)
    if all((folder / f).is_file() for f in DEV_CA_FILES):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".keys-", dir=folder.parent))
    try:
        ca_key, ee_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _cert("conjure development CA", _name("conjure development CA"), ca_key.public_key(), ca_key, ca=True)
        ee = _cert("conjure development signer", ca.subject, ee_key.public_key(), ca_key, ca=False)
        (tmp / "ca.pem").write_bytes(_pem(ca))
        (tmp / "signer.pem").write_bytes(_pem(ee) + _pem(ca))
        _write_private(tmp / "ca.key", _key_pem(ca_key))
        _write_private(tmp / "signer.key", _key_pem(ee_key))
        try:
            os.rename(tmp, folder)       # atomic; fails if another process got there first
        except OSError:
            if not all((folder / f).is_file() for f in DEV_CA_FILES):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _alg_for(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise ValueError(f"unsupported EC curve {key.curve.name} for C2PA: use P-256, P-384 or P-521")
        return algs[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"unsupported key type {type(key).__name__} for C2PA: use EC (P-256), RSA or Ed25519")


def load_identity(cert: Path, key: Path, source: str | None = None) -> SigningIdentity:
    """Read a PEM chain and key, check that they belong together, and pick the algorithm from the key."""
    for what, path in (("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise ValueError(f"the C2PA {what} file '{path}' does not exist")
    chain_pem, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
        private = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as e:
        raise ValueError(f"cannot read the C2PA certificate '{cert}' or key '{key}' as unencrypted PEM: {e}") from e
    if certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != \
            private.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError(f"the key '{key}' does not belong to the first certificate in '{cert}' "
                         "(the chain must start with the signing certificate)")
    return SigningIdentity(chain_pem, key_pem, _alg_for(private), source or str(cert))


def signing_identity(settings=None) -> SigningIdentity:
    """The user's certificate and key when both are set, else the development CA (made on first use)."""
    if settings is None:
        from conjure.config import get_settings
        settings = get_settings()
    cert, key = settings.c2pa_cert, settings.c2pa_key
    if (cert is None) != (key is None):
        raise ValueError("set both CONJURE_C2PA_CERT and CONJURE_C2PA_KEY, or neither (to use the development CA)")
    if cert is not None:
        return load_identity(cert, key)
    folder = make_dev_ca(settings.home / "keys")
    return load_identity(folder / "signer.pem", folder / "signer.key", source="dev-ca")


def trust_anchors_pem(settings=None) -> str:
    """The configured trust anchors (PEM text), or "" when none are configured."""
    if settings is None:
        from conjure.config import get_settings
        settings = get_settings()
    path = settings.c2pa_trust_anchors
    if path is None:
        return ""
    if not Path(path).is_file():
        raise ValueError(f"the C2PA trust anchors file '{path}' (CONJURE_C2PA_TRUST_ANCHORS) does not exist")
    text = Path(path).read_text()
    try:
        x509.load_pem_x509_certificates(text.encode())
    except ValueError as e:
        raise ValueError(f"the C2PA trust anchors file '{path}' holds no PEM certificate: {e}") from e
    return text
