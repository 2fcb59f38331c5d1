"""The CA registry: CA rows by owner and identifier, and the per-CA state cached per process.

A CA's kind, key and certificate never change once it is issued, so what issuing from it
needs (the pre-encoded Issuer parts, its token signer, its PEM and chain) is built once per
process (service/pki/builder.py: building them costs more than a signature). Its *status*
may change in another process (UpdateCACertificateStatus), so it is never taken from the
cache where it matters: the reservation transaction re-reads it (invariant 2).
"""

from __future__ import annotations

import dataclasses
import threading

from hsm.token import Token
from service.errors import Internal, InvalidArgument, NotFound, quote
from service.pki.algorithms import CaAlgorithm
from service.pki.builder import Issuer
from service.pki.pem import encode as pem_encode
from service.storage import repo
from service.storage.repo import CaRow
from service.storage.schema import CaStatus
from service.storage.store import Store
from service.token_signer import TokenSigner

__all__ = ["KEY_TOKEN_HSM", "KEY_TOKEN_SOFTWARE", "CaRegistry", "CaState", "KeyPlacement",
           "Tokens"]

# Token roles (hsm.config.TokenRole values) as stored in key_token columns.
KEY_TOKEN_HSM = "hsm"  # noqa: S105 - a token role, not a secret
KEY_TOKEN_SOFTWARE = "software"  # noqa: S105


@dataclasses.dataclass(frozen=True)
class KeyPlacement:
    """Where a system-generated key is made: the token, its stored role, exportability."""

    token: Token
    token_role: str  # KEY_TOKEN_HSM | KEY_TOKEN_SOFTWARE, as stored in key_token
    exportable: bool


@dataclasses.dataclass(frozen=True)
class Tokens:
    """The two tokens of a process: ``hsm`` (CA keys, non-exportable) and ``software``."""

    hsm: Token
    software: Token

    def for_role(self, role: str | None) -> Token:
        """The token a stored ``key_token`` value names."""
        return self.hsm if role == KEY_TOKEN_HSM else self.software


@dataclasses.dataclass(frozen=True)
class CaState:
    """Per-CA state built once per process: Issuers, token signer, algorithm, chain."""

    ca: CaRow  # as loaded; its status is re-checked when a serial is reserved
    algorithm: CaAlgorithm
    issuer: Issuer
    issuer_with_crl: Issuer | None  # the variant whose leaves carry the CRL DP (enable_crl)
    signer: TokenSigner
    certificate_pem: str
    chain_above_pem: str  # certificates above this CA, PEM (empty for a root)

    def issuer_for(self, enable_crl: bool) -> Issuer:
        """The Issuer whose leaves carry the CRL distribution point, or the one without."""
        if enable_crl:
            if self.issuer_with_crl is None:
                raise InvalidArgument(
                    "enable_crl = 1 but the issuing CA was created without a CRL "
                    "(enable_crl = 0)", reason="InvalidParameter.EnableCrl")
            return self.issuer_with_crl
        return self.issuer

    @property
    def chain_pem(self) -> str:
        """This CA's certificate and those above it, PEM (immediately = 2)."""
        return self.certificate_pem + self.chain_above_pem


class CaRegistry:
    """Loads CA rows (owner-scoped) and caches each issued CA's :class:`CaState`."""

    def __init__(self, store: Store, hsm_token: Token, *, public_base_url: str) -> None:
        if not public_base_url.startswith(("http://", "https://")):
            raise ValueError(f"public_base_url must be an http(s) URL, got {public_base_url!r}")
        self._store = store
        self._hsm = hsm_token
        self._base_url = public_base_url.rstrip("/")
        self._states: dict[tuple[str, str], CaState] = {}  # (owner, CA identifier)
        self._lock = threading.Lock()

    def crl_url(self, ca_identifier: str) -> str:
        """The CRL distribution point URL of a CA (served by service/http.py)."""
        return f"{self._base_url}/crl/{ca_identifier}.crl"

    def ca_issuers_url(self, ca_identifier: str) -> str:
        """Where the CA's certificate is served (DER), for authorityInfoAccess caIssuers."""
        return f"{self._base_url}/ca/{ca_identifier}.cer"

    def ocsp_url(self) -> str:
        """The OCSP responder of every CA with CRLs enabled (service/ocsp.py)."""
        return f"{self._base_url}/ocsp"

    def load(self, owner: str, identifier: str, reason: str) -> CaRow:
        """The CA row (status read now); NotFound with ``reason`` if the owner has none."""
        field = reason.split(".")[-1]
        if not identifier:
            raise InvalidArgument(f"{field} is required", reason=f"InvalidParameter.{field}")
        with self._store.read() as conn:
            row = repo.get_ca(conn, owner, identifier)
        if row is None or row.status in (CaStatus.RESERVED, CaStatus.FAILED):
            raise NotFound(f"no CA with identifier {quote(identifier)}", reason=reason)
        return row

    def cached(self, owner: str, identifier: str) -> CaState | None:
        """The cached state of a CA, if this process has built it (status may be stale)."""
        return self._states.get((owner, identifier))

    def state(self, owner: str, ca: CaRow) -> CaState:
        """The per-process state of an issued CA, built on first use."""
        state = self._states.get((owner, ca.identifier))
        if state is not None:
            return state
        if ca.certificate is None:
            raise Internal(f"CA {ca.identifier} has status {ca.status} but no certificate")
        algorithm = CaAlgorithm(ca.algorithm)
        sig = algorithm.signature_algorithm
        # RFC 5280 4.2.2.1: every certificate names where its issuer's certificate is, and
        # the OCSP responder where the CA answers OCSP (every CA that publishes CRLs).
        aia = {"ca_issuers_url": self.ca_issuers_url(ca.identifier),
               "ocsp_url": self.ocsp_url() if ca.enable_crl else None}
        issuer = Issuer.from_certificate(ca.certificate, sig, **aia)
        with_crl = (Issuer.from_certificate(ca.certificate, sig,
                                            crl_url=self.crl_url(ca.identifier), **aia)
                    if ca.enable_crl else None)
        chain_above = ""
        if ca.parent_identifier is not None:
            with self._store.read() as conn:
                parent = repo.get_ca(conn, owner, ca.parent_identifier)
            if parent is None or parent.certificate is None:
                raise Internal(f"parent of CA {ca.identifier} is missing")
            chain_above = pem_encode(parent.certificate)
        state = CaState(
            ca=ca,
            algorithm=algorithm,
            issuer=issuer,
            issuer_with_crl=with_crl,
            signer=TokenSigner(self._hsm, bytes.fromhex(ca.key_id), sig, ca.public_key_info),
            certificate_pem=pem_encode(ca.certificate),
            chain_above_pem=chain_above,
        )
        with self._lock:
            return self._states.setdefault((owner, ca.identifier), state)
