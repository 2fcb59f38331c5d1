"""The OCSP responder (RFC 6960, with RFC 5019's lightweight profile), from pre-signed
responses.

Which key signs: the CA's own key, in the token (RFC 6960 4.2.2.2, the first option). Why
not a delegated responder certificate: it would add a second non-exportable key per CA,
a certificate to issue and renew before it expires, and -- because a responder certificate
carries id-pkix-ocsp-nocheck -- a key whose compromise cannot be revoked for its lifetime.
The cost a delegated key saves, a CA-key operation per response, is already gone: responses
are pre-signed and cached, so the CA key signs once per certificate per refresh (and once
per request that asks for a nonce), each use recorded in the audit log.

Serving (``respond``), for a request with one CertID (RFC 5019 2.1.1):
  1. find the CA by the CertID's issuerKeyHash and issuerNameHash (SHA-1 or SHA-256); a CA
     we do not serve (or one without CRLs) gets ``unauthorized`` (RFC 6960 2.3);
  2. a request with a nonce of 1..128 octets gets a freshly signed response that echoes it
     (RFC 9654 2.1, which updates RFC 6960 4.4.1); any other nonce length gets
     ``malformedRequest``, with no signature, audit record or stored response (RFC 9654
     2.1); a request without a nonce is served from the cache:
  3. the in-process cache holds the response DER per (CA, serial, hash); an entry is used
     as is for ``recheck_seconds`` (0.5 s), then checked against the certificate's status in
     the database (one indexed read), so a revocation is served within a second;
  4. on a miss (no response yet, the status moved, or nextUpdate is near) the response is
     taken from the ``ocsp_response`` table if another worker signed it already, else built,
     signed by the token (one thread per process in the token: Token.run), verified against
     the CA key (invariant 3, docs/architecture.md), audited and stored, in one commit.
Certificate status: ISSUED is good; REVOKED is revoked with its time and reason; a serial
the CA never issued (or only reserved) is unknown. thisUpdate is the signing time, nextUpdate
``validity`` later; the background thread re-signs stored responses ``refresh_margin``
before their nextUpdate (:meth:`OcspResponder.refresh_due`).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asn1crypto import algos, core, ocsp
from sqlalchemy import Connection, and_, delete, func, insert, select
from sqlalchemy.exc import OperationalError

from hsm.errors import TokenUnavailable
from service import audit, metrics
from service.audit import KeyRef
from service.errors import Unavailable
from service.pki.builder import read_tlv
from service.pki.crl import ReasonCode
from service.pki.verify import verify_signature
from service.storage.repo import get_ca_any_owner, serial_hex
from service.storage.schema import CaStatus, CertificateStatus
from service.storage.schema import ca as ca_t
from service.storage.schema import certificate as cert_t
from service.storage.schema import ocsp_response as ocsp_t

if TYPE_CHECKING:
    from service.private_ca.service import PrivateCaService

__all__ = ["OcspResponder", "error_response", "is_successful"]

_log = logging.getLogger("hsmca.ocsp")

#: nextUpdate - thisUpdate of a response (RFC 5019 4: pre-produced, valid for a while).
DEFAULT_VALIDITY = dt.timedelta(hours=24)
#: A response is re-signed once its nextUpdate is nearer than this.
DEFAULT_REFRESH_MARGIN = dt.timedelta(hours=6)
#: How long a cached response is served before the certificate's status is read again.
DEFAULT_RECHECK_SECONDS = 0.5
#: Most responses kept per process (entries for serials nobody asks about fall out).
MAX_CACHED = 100_000
#: Raw request bytes remembered per process, so a repeated request skips parsing.
MAX_REQUESTS = 100_000
#: The nonce lengths a request may carry, in octets (RFC 9654 2.1); any other length is
#: answered malformedRequest, unsigned.
MIN_NONCE, MAX_NONCE = 1, 128

_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
_REASON_NAMES = {
    ReasonCode.KEY_COMPROMISE: "key_compromise", ReasonCode.CA_COMPROMISE: "ca_compromise",
    ReasonCode.AFFILIATION_CHANGED: "affiliation_changed",
    ReasonCode.SUPERSEDED: "superseded",
    ReasonCode.CESSATION_OF_OPERATION: "cessation_of_operation",
    ReasonCode.CERTIFICATE_HOLD: "certificate_hold",
    ReasonCode.REMOVE_FROM_CRL: "remove_from_crl",
    ReasonCode.PRIVILEGE_WITHDRAWN: "privilege_withdrawn",
    ReasonCode.AA_COMPROMISE: "aa_compromise",
}


def error_response(status: str) -> bytes:
    """An OCSPResponse without responseBytes: malformed_request, unauthorized, ..."""
    return bytes(ocsp.OCSPResponse({"response_status": status}).dump())


def is_successful(response_der: bytes) -> bool:
    """Whether an OCSPResponse's responseStatus is successful (0); False for the error
    responses (malformedRequest, internalError, tryLater, unauthorized: RFC 6960 4.2.1)."""
    try:
        tag, start, _ = read_tlv(response_der)
        if tag != 0x30:
            return False
        tag, start, end = read_tlv(response_der, start)
    except ValueError:
        return False
    return tag == 0x0A and response_der[start:end] == b"\x00"


@dataclasses.dataclass(frozen=True)
class _Status:
    """A certificate's status as a response states it."""

    name: str  # good | revoked | unknown
    revoked_at: dt.datetime | None = None
    reason: int | None = None


@dataclasses.dataclass
class _Entry:
    """A cached response."""

    der: bytes
    status: _Status
    next_update: dt.datetime
    checked: float  # time.monotonic() of the last status check


@dataclasses.dataclass(frozen=True)
class _Ca:
    identifier: str
    owner: str


_Key = tuple[str, int, str]  # (CA identifier, serial, hash algorithm)
#: The CAs this responder answers for: CRLs enabled, certificate issued (revoked CAs too:
#: the status of what they issued is still asked for).
_SERVED = (ca_t.c.enable_crl.is_(True), ca_t.c.status.in_((CaStatus.ISSUE, CaStatus.REVOKE)))


class OcspResponder:
    """Answers OCSP requests for every CA with CRLs enabled (see the module docstring)."""

    def __init__(self, svc: PrivateCaService, *, validity: dt.timedelta = DEFAULT_VALIDITY,
                 refresh_margin: dt.timedelta = DEFAULT_REFRESH_MARGIN,
                 recheck_seconds: float = DEFAULT_RECHECK_SECONDS,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        if refresh_margin >= validity:
            raise ValueError("refresh_margin must be shorter than validity")
        self._svc = svc
        self._store = svc.store
        self._validity = validity
        self._margin = refresh_margin
        self._recheck = recheck_seconds
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._requests: OrderedDict[bytes, _Key] = OrderedDict()
        self._issuers: dict[tuple[str, bytes, bytes], _Ca] = {}
        self._issuers_version: tuple[Any, ...] = ()
        self._lock = threading.Lock()  # cache bookkeeping
        self._miss_lock = threading.Lock()  # one miss at a time signs (the token is serial)
        self.signed = 0  # responses signed by this process (tests, benchmarks)

    # --- serving --------------------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """The DER OCSPResponse for a DER OCSPRequest (an error response, never an exception)."""
        try:
            return self._respond(request_der)
        except Exception as e:
            # RFC 6960 4.2.1: tryLater when the token or database is unavailable for now,
            # internalError otherwise; the details go to the log only.
            unavailable = isinstance(e, (TokenUnavailable, Unavailable, OperationalError))
            _log.exception("OCSP request failed")
            metrics.ocsp_response("error", "none")
            return error_response("try_later" if unavailable else "internal_error")

    def _respond(self, request_der: bytes) -> bytes:
        key = self._requests.get(request_der)
        if key is not None:
            entry = self._cache.get(key)
            if entry is not None and time.monotonic() - entry.checked < self._recheck:
                metrics.ocsp_response(entry.status.name, "hit")
                return entry.der
        try:
            parsed = _parse_request(request_der)
        except ValueError as e:
            _log.debug("malformed OCSP request: %s", e)
            metrics.ocsp_response("malformed", "none")
            return error_response("malformed_request")
        algorithm, name_hash, key_hash, serial, nonce = parsed
        ca = self._issuer(algorithm, name_hash, key_hash)
        if ca is None:
            metrics.ocsp_response("unauthorized", "none")
            return error_response("unauthorized")
        key = (ca.identifier, serial, algorithm)
        if nonce is not None:
            status = self._status(ca, serial)
            der, _ = self._sign(ca, serial, algorithm, status, nonce)
            metrics.ocsp_response(status.name, "nonce")
            return der
        with self._lock:
            self._requests[request_der] = key
            if len(self._requests) > MAX_REQUESTS:
                self._requests.popitem(last=False)
        return self._cached(ca, key)

    def _cached(self, ca: _Ca, key: _Key) -> bytes:
        entry = self._cache.get(key)
        now_mono = time.monotonic()
        if entry is not None and now_mono - entry.checked < self._recheck:
            metrics.ocsp_response(entry.status.name, "hit")
            return entry.der
        status = self._status(ca, key[1])
        now = self._clock()
        if entry is not None and entry.status == status and \
                entry.next_update - now > self._margin:
            entry.checked = now_mono
            metrics.ocsp_response(status.name, "hit")
            return entry.der
        with self._miss_lock:
            entry = self._stored(ca, key, status, now) or self._sign_and_store(ca, key, status)
            with self._lock:
                self._cache[key] = entry
                self._cache.move_to_end(key)
                if len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
        metrics.ocsp_response(status.name, "miss")
        return entry.der

    def _stored(self, ca: _Ca, key: _Key, status: _Status, now: dt.datetime) -> _Entry | None:
        """A response another worker signed, if it states ``status`` and is fresh."""
        if status.name == "unknown":
            return None  # never stored: anyone can ask about any number of serials
        with self._store.read() as conn:
            row = conn.execute(select(ocsp_t.c.der, ocsp_t.c.cert_status, ocsp_t.c.next_update)
                               .where(ocsp_t.c.ca_identifier == ca.identifier,
                                      ocsp_t.c.serial == serial_hex(key[1]),
                                      ocsp_t.c.hash_algorithm == key[2])).first()
        if row is None or row.cert_status != _status_code(status) or \
                row.next_update - now <= self._margin:
            return None
        return _Entry(bytes(row.der), status, row.next_update, time.monotonic())

    def _sign_and_store(self, ca: _Ca, key: _Key, status: _Status) -> _Entry:
        der, (_, next_update) = self._sign(ca, key[1], key[2], status, None, store=key)
        return _Entry(der, status, next_update, time.monotonic())

    # --- lookups -------------------------------------------------------------------------

    def _issuer(self, algorithm: str, name_hash: bytes, key_hash: bytes) -> _Ca | None:
        found = self._issuers.get((algorithm, name_hash, key_hash))
        if found is None and self._served_version() != self._issuers_version:
            # A CA created (or its CRLs turned on) since the last load: one cheap read
            # tells, and the CAs are loaded again only when the set changed.
            self._load_issuers()
            found = self._issuers.get((algorithm, name_hash, key_hash))
        return found

    def _served_version(self) -> tuple[Any, ...]:
        with self._store.read() as conn:
            return tuple(conn.execute(select(func.count(), func.max(ca_t.c.updated_at))
                                      .where(*_SERVED)).one())

    def _load_issuers(self) -> None:
        issuers: dict[tuple[str, bytes, bytes], _Ca] = {}
        version = self._served_version()
        with self._store.read() as conn:
            rows = conn.execute(select(ca_t.c.identifier, ca_t.c.owner, ca_t.c.subject_der,
                                       ca_t.c.public_key_info).where(*_SERVED)).all()
        for identifier, owner, subject_der, spki in rows:
            bits = _public_key_bits(bytes(spki))
            ca = _Ca(identifier, owner)
            for name, fn in _HASHES.items():
                issuers[(name, fn(bytes(subject_der)).digest(), fn(bits).digest())] = ca
        self._issuers = issuers
        self._issuers_version = version

    def _status(self, ca: _Ca, serial: int) -> _Status:
        with self._store.read() as conn:
            row = conn.execute(select(cert_t.c.status, cert_t.c.revoked_at,
                                      cert_t.c.revocation_reason)
                               .where(cert_t.c.issuer_identifier == ca.identifier,
                                      cert_t.c.serial == serial_hex(serial))).first()
        if row is None or row.status not in (CertificateStatus.ISSUED, CertificateStatus.REVOKED):
            return _Status("unknown")
        if row.status == CertificateStatus.ISSUED:
            return _Status("good")
        revoked_at = (row.revoked_at or self._clock()).astimezone(dt.UTC).replace(microsecond=0)
        return _Status("revoked", revoked_at, row.revocation_reason or 0)

    # --- signing -------------------------------------------------------------------------

    def _sign(self, ca: _Ca, serial: int, algorithm: str, status: _Status,
              nonce: bytes | None, *, store: _Key | None = None
              ) -> tuple[bytes, tuple[dt.datetime, dt.datetime]]:
        """Build, sign (token), verify, audit and (for the cache) store one response."""
        with self._store.read() as conn:
            ca_row = get_ca_any_owner(conn, ca.identifier)
        if ca_row is None:
            raise LookupError(f"CA {ca.identifier} vanished")
        ctx = self._svc.registry.state(ca_row.owner, ca_row)
        issuer = ctx.issuer
        now = self._clock().astimezone(dt.UTC).replace(microsecond=0)
        next_update = now + self._validity
        tbs = _response_data(issuer.subject_der, issuer.public_key_info, serial, algorithm,
                             status, now, next_update, nonce)
        signature = ctx.signer.sign(tbs)
        if not verify_signature(issuer.public_key_info, issuer.algorithm, tbs, signature):
            raise RuntimeError(f"OCSP response signature of CA {ca.identifier} does not verify")
        der = _response(tbs, issuer.signature_algorithm_der, signature)
        self.signed += 1
        ops: list[Callable[[Connection], Any]] = [audit.record_op(
            "ocsp.sign", resources=[ca.identifier], key=KeyRef(ca_row.key_token, ca_row.key_id),
            tenant=ca_row.owner,
            details={"serial": serial_hex(serial), "cert_status": status.name,
                     "nonce": nonce is not None,
                     "response_sha256": hashlib.sha256(der).hexdigest()})]
        if store is not None and status.name != "unknown":
            ops.append(lambda conn: _store(conn, ca_row.owner, store, status, now, next_update,
                                           der))
        # The record of the key use is durable before the response leaves (and the stored
        # response is there for the other workers), in one commit.
        for _, error in self._store.run_many(ops):
            if error is not None:
                raise error
        return der, (now, next_update)

    def refresh_due(self) -> int:
        """Re-sign stored responses whose nextUpdate is near; returns how many."""
        now = self._clock()
        with self._store.read() as conn:
            due = conn.execute(select(ocsp_t.c.ca_identifier, ocsp_t.c.serial,
                                      ocsp_t.c.hash_algorithm)
                               .where(ocsp_t.c.next_update <= now + self._margin)).all()
        done = 0
        for ca_identifier, serial, algorithm in due:
            ca = next((c for c in self._issuers.values() if c.identifier == ca_identifier),
                      None)
            if ca is None:
                self._load_issuers()
                ca = next((c for c in self._issuers.values() if c.identifier == ca_identifier),
                          None)
            if ca is None:
                continue  # CRLs (and so OCSP) turned off, or the CA is gone
            key = (ca_identifier, int(serial, 16), str(algorithm))
            try:
                with self._miss_lock:
                    entry = self._sign_and_store(ca, key, self._status(ca, key[1]))
                with self._lock:
                    self._cache[key] = entry
                done += 1
            except Exception:
                _log.exception("could not refresh the OCSP response of %s/%s",
                               ca_identifier, serial)
        return done


def _status_code(status: _Status) -> str:
    return status.name if status.name != "revoked" else f"revoked:{status.reason}"


def _store(conn: Connection, owner: str, key: _Key, status: _Status, this_update: dt.datetime,
           next_update: dt.datetime, der: bytes) -> None:
    where = and_(ocsp_t.c.ca_identifier == key[0], ocsp_t.c.serial == serial_hex(key[1]),
                 ocsp_t.c.hash_algorithm == key[2])
    conn.execute(delete(ocsp_t).where(where))
    conn.execute(insert(ocsp_t), [{
        "ca_identifier": key[0], "serial": serial_hex(key[1]), "hash_algorithm": key[2],
        "owner": owner, "cert_status": _status_code(status), "this_update": this_update,
        "next_update": next_update, "der": der}])


def _public_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING's value without the unused-bits octet (RFC 6960
    4.1.1: issuerKeyHash is over it)."""
    _, start, _ = read_tlv(spki)
    _, _, alg_end = read_tlv(spki, start)
    _, bits_start, bits_end = read_tlv(spki, alg_end)
    return spki[bits_start + 1:bits_end]


def _parse_request(der: bytes) -> tuple[str, bytes, bytes, int, bytes | None]:
    """(hash algorithm, issuerNameHash, issuerKeyHash, serial, nonce or None)."""
    try:
        request = ocsp.OCSPRequest.load(der, strict=True)
        tbs = request["tbs_request"]
        requests = tbs["request_list"]
        if len(requests) != 1:
            raise ValueError(f"{len(requests)} requests; one per OCSPRequest (RFC 5019 2.1.1)")
        cert_id = requests[0]["req_cert"]
        algorithm = cert_id["hash_algorithm"]["algorithm"].native
        if algorithm not in _HASHES:
            raise ValueError(f"CertID hash {algorithm} is not supported")
        nonce = None
        for ext in tbs["request_extensions"] or ():
            if ext["extn_id"].native == "nonce":
                nonce = _nonce(bytes(ext["extn_value"]))
        serial = int(cert_id["serial_number"].native)
        if serial <= 0 or serial.bit_length() > 160:
            raise ValueError("serialNumber must be positive and at most 20 octets (RFC 5280)")
        return (algorithm, bytes(cert_id["issuer_name_hash"].native),
                bytes(cert_id["issuer_key_hash"].native), serial, nonce)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(str(e)) from e


def _nonce(extn_value: bytes) -> bytes:
    """The nonce of a Nonce extension's extnValue: the contents of the one DER OCTET STRING
    it holds (RFC 9654 2.1: Nonce ::= OCTET STRING (SIZE(1..128))).

    RFC 9654 2.1 (updating RFC 6960 4.4.1): a responder MUST reject a request whose
    nonce is 0 octets or longer than 128 octets with malformedRequest. Checked here, before
    anything is looked up or signed: the token signs only for a nonce of 1..128 octets.
    """
    tag, start, end = read_tlv(extn_value)
    if tag != 0x04 or end != len(extn_value):
        raise ValueError("the Nonce extension's extnValue is not one DER OCTET STRING")
    if not MIN_NONCE <= end - start <= MAX_NONCE:
        raise ValueError(f"a {end - start}-octet nonce; RFC 9654 2.1 allows "
                         f"{MIN_NONCE}..{MAX_NONCE}")
    return extn_value[start:end]


def _response_data(subject_der: bytes, spki: bytes, serial: int, algorithm: str,
                   status: _Status, this_update: dt.datetime, next_update: dt.datetime,
                   nonce: bytes | None) -> bytes:
    """ResponseData DER (RFC 6960 4.2.1): responderID byKey (RFC 5019 2.2.3), one
    SingleResponse, the nonce echoed when asked."""
    fn = _HASHES[algorithm]
    bits = _public_key_bits(spki)
    cert_id = ocsp.CertId({
        # RFC 5019 2.1.1 / RFC 6960 4.1.1: parameters NULL, as OpenSSL and browsers send.
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm,
                                                 "parameters": core.Null()}),
        "issuer_name_hash": fn(subject_der).digest(),
        "issuer_key_hash": fn(bits).digest(),
        "serial_number": serial,
    })
    if status.name == "good":
        cert_status = ocsp.CertStatus(name="good", value=core.Null())
    elif status.name == "revoked":
        info: dict[str, Any] = {"revocation_time": status.revoked_at}
        if status.reason:
            # As on the CRL: a reason only when it is not unspecified (RFC 5280 5.3.1).
            info["revocation_reason"] = _REASON_NAMES[ReasonCode(status.reason)]
        cert_status = ocsp.CertStatus(name="revoked", value=ocsp.RevokedInfo(info))
    else:
        cert_status = ocsp.CertStatus(name="unknown", value=core.Null())
    data: dict[str, Any] = {
        "responder_id": ocsp.ResponderId(name="by_key",
                                         value=hashlib.sha1(bits,  # noqa: S324 - RFC 6960
                                                            usedforsecurity=False).digest()),
        "produced_at": this_update,
        "responses": [{"cert_id": cert_id, "cert_status": cert_status,
                       "this_update": this_update, "next_update": next_update}],
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    return bytes(ocsp.ResponseData(data).dump())


def _response(tbs: bytes, signature_algorithm_der: bytes, signature: bytes) -> bytes:
    basic = ocsp.BasicOCSPResponse({
        "tbs_response_data": ocsp.ResponseData.load(tbs),
        "signature_algorithm": algos.SignedDigestAlgorithm.load(signature_algorithm_der),
        "signature": signature,
    })
    return bytes(ocsp.OCSPResponse({
        "response_status": "successful",
        "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
    }).dump())


def decode_get_path(path: str) -> bytes | None:
    """The DER request of ``GET /ocsp/<base64>`` (RFC 6960 A.1: base64, then URL-encoded)."""
    from urllib.parse import unquote

    text = unquote(path[len("/ocsp/"):])
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
