"""Fixtures for the certificate builder tests: RSA and EC hierarchies with software keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pkib_support import (
    Hierarchy,
    build_hierarchy,
    ec_signer,
    rsa_signer,
)

from service.pki.signer import SignatureAlgorithm


@pytest.fixture(scope="session")
def rsa_hierarchy() -> Hierarchy:
    # Root valid past 2050 so GeneralizedTime is exercised (RFC 5280 4.1.2.5).
    return build_hierarchy("rsa", rsa_signer(), rsa_signer(), root_years=30)


@pytest.fixture(scope="session")
def ec_hierarchy() -> Hierarchy:
    return build_hierarchy("ec", ec_signer(ec.SECP384R1(), SignatureAlgorithm.SHA384_ECDSA),
                           ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA))


@pytest.fixture(scope="session", params=["rsa", "ec"])
def hierarchy(request: pytest.FixtureRequest, rsa_hierarchy: Hierarchy,
              ec_hierarchy: Hierarchy) -> Hierarchy:
    return rsa_hierarchy if request.param == "rsa" else ec_hierarchy


@pytest.fixture(scope="session")
def constrained_hierarchy() -> Hierarchy:
    """A sub CA whose EKU extension allows clientAuth only."""
    return build_hierarchy("eku", ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA),
                           ec_signer(ec.SECP256R1(), SignatureAlgorithm.SHA256_ECDSA),
                           sub_ekus=("clientAuth",))
