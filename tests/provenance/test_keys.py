"""Signing identity: the development CA made on first use, or the user's own chain and key."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from conjure.provenance.keys import load_identity, make_dev_ca, signing_identity, trust_anchors_pem


def _settings(tmp_path, **kw):
    base = {"home": tmp_path, "c2pa_cert": None, "c2pa_key": None, "c2pa_trust_anchors": None}
    return SimpleNamespace(**{**base, **kw})


def test_dev_ca_is_made_once_with_private_keys_kept_private(tmp_path):
    ident = signing_identity(_settings(tmp_path))
    assert ident.source == "dev-ca" and ident.alg == "es256"
    folder = tmp_path / "keys"
    for name in ("ca.key", "signer.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    again = signing_identity(_settings(tmp_path))
    assert again.key_pem == ident.key_pem   # reused, not regenerated


def test_signer_certificate_has_the_extensions_c2pa_requires(tmp_path):
    folder = make_dev_ca(tmp_path / "keys")
    ee, ca = x509.load_pem_x509_certificates((folder / "signer.pem").read_bytes())
    assert ee.issuer == ca.subject and ee.subject != ca.subject
    assert ee.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = ee.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in ee.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    ee.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_users_own_certificate_and_clear_errors(tmp_path):
    other = make_dev_ca(tmp_path / "their-pki")
    ident = signing_identity(_settings(tmp_path, c2pa_cert=other / "signer.pem", c2pa_key=other / "signer.key"))
    assert ident.source == str(other / "signer.pem")
    assert not (tmp_path / "keys").exists()   # no dev CA when the user brings a certificate
    with pytest.raises(ValueError, match="set both"):
        signing_identity(_settings(tmp_path, c2pa_cert=other / "signer.pem"))
    with pytest.raises(ValueError, match="does not exist"):
        load_identity(tmp_path / "missing.pem", other / "signer.key")
    with pytest.raises(ValueError, match="does not belong"):
        load_identity(other / "signer.pem", other / "ca.key")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="PEM"):
        load_identity(tmp_path / "junk.pem", other / "signer.key")


def test_trust_anchors(tmp_path):
    assert trust_anchors_pem(_settings(tmp_path)) == ""
    folder = make_dev_ca(tmp_path / "keys")
    assert "BEGIN CERTIFICATE" in trust_anchors_pem(_settings(tmp_path, c2pa_trust_anchors=folder / "ca.pem"))
    with pytest.raises(ValueError, match="does not exist"):
        trust_anchors_pem(_settings(tmp_path, c2pa_trust_anchors=tmp_path / "nope.pem"))
