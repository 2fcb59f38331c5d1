"""The microservice example in docs/client.md runs as printed against a real server."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from client_support import Served
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.client import HsmcaClient

REPO = Path(__file__).resolve().parents[2]


def _example() -> str:
    text = (REPO / "docs" / "client.md").read_text()
    section = text.split("## A microservice", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_documented_start_up_obtains_a_certificate(
        served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HsmcaClient.connect(served.target, insecure=True) as client:
        root = client.pca.create_root_ca_certificate(
            common_name="Docs Root", organization="hsmca", country_code="CN",
            algorithm="ECC_256", years=2)
        sub = client.pca.create_sub_ca_certificate(
            parent_identifier=root.identifier, common_name="Docs Sub", organization="hsmca",
            country_code="CN", algorithm="ECC_256", years=1, enable_crl=1, crl_day=1)
        monkeypatch.setenv("HSMCA_ISSUING_CA", sub.identifier)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "tls").mkdir()
        namespace: dict[str, object] = {"__name__": "docs_example"}
        exec(compile(_example(), "docs/client.md", "exec"), namespace)  # noqa: S102
        obtain = namespace["obtain"]
        cert = obtain(client)  # type: ignore[operator]
    assert isinstance(cert, x509.Certificate)
    key = serialization.load_pem_private_key((tmp_path / "tls/server.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert stat.S_IMODE(os.stat(tmp_path / "tls/server.key").st_mode) == 0o600
    chain = x509.load_pem_x509_certificates((tmp_path / "tls/server.pem").read_bytes())
    assert chain[0] == cert and len(chain) == 3  # leaf, sub CA, root
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["orders.internal", "orders"]
