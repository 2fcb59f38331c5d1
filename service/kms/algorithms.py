"""KMS Certificates Manager enumerations and the rules that tie them together.

Names and values are the API's own spellings (KeySpec ``EC_SM2``, Algorithm ``SM2DSA``, ...).
Which algorithm a key may use, how long a message may be and what a DIGEST is are decided
here once; servicers call the ``parse_*`` / ``check_*`` helpers, which raise
:class:`~service.errors.InvalidArgument` with the API's reason codes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from service.errors import InvalidArgument
from service.hints import KMS_KEY_SPEC_FOR_PCA, spelling_hint
from service.pki.signer import SignatureAlgorithm
from service.storage.schema import ProtectionLevel


class KeySpec(enum.Enum):
    """The key type of a KMS certificate (CreateCertificate ``KeySpec``)."""

    RSA_2048 = "RSA_2048"
    EC_P256 = "EC_P256"
    EC_SM2 = "EC_SM2"


class SignAlgorithm(enum.Enum):
    """CertificatePrivateKeySign / CertificatePublicKeyVerify ``Algorithm``."""

    RSA_PKCS1_SHA_256 = "RSA_PKCS1_SHA_256"  # RSASSA-PKCS1-v1_5, SHA-256 (RFC 8017 8.2)
    RSA_PSS_SHA_256 = "RSA_PSS_SHA_256"  # RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (RFC 8017 8.1)
    ECDSA_SHA_256 = "ECDSA_SHA_256"  # ECDSA P-256, SHA-256, DER Ecdsa-Sig-Value (RFC 3279 2.2.3)
    SM2DSA = "SM2DSA"  # SM2 with SM3, ID 1234567812345678 (GB/T 32918.2, RFC 8998 3.2.1)


class EncryptionAlgorithm(enum.Enum):
    """CertificatePublicKeyEncrypt / CertificatePrivateKeyDecrypt ``Algorithm``."""

    RSAES_OAEP_SHA_1 = "RSAES_OAEP_SHA_1"  # OAEP, SHA-1 and MGF1-SHA-1 (RFC 8017 7.1)
    RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"  # OAEP, SHA-256 and MGF1-SHA-256 (RFC 8017 7.1)
    SM2PKE = "SM2PKE"  # SM2 encryption, SM3, ASN.1 C1C3C2 (GB/T 32918.4, GM/T 0009)


class MessageType(enum.Enum):
    """Whether ``Message`` is the message itself or its digest (default RAW)."""

    RAW = "RAW"
    DIGEST = "DIGEST"


# The API's per-key-spec algorithm table.
SIGN_ALGORITHMS: Mapping[KeySpec, frozenset[SignAlgorithm]] = MappingProxyType(
    {
        KeySpec.RSA_2048: frozenset(
            {SignAlgorithm.RSA_PKCS1_SHA_256, SignAlgorithm.RSA_PSS_SHA_256}
        ),
        KeySpec.EC_P256: frozenset({SignAlgorithm.ECDSA_SHA_256}),
        KeySpec.EC_SM2: frozenset({SignAlgorithm.SM2DSA}),
    }
)
ENCRYPTION_ALGORITHMS: Mapping[KeySpec, frozenset[EncryptionAlgorithm]] = MappingProxyType(
    {
        KeySpec.RSA_2048: frozenset(
            {EncryptionAlgorithm.RSAES_OAEP_SHA_1, EncryptionAlgorithm.RSAES_OAEP_SHA_256}
        ),
        KeySpec.EC_P256: frozenset(),
        KeySpec.EC_SM2: frozenset({EncryptionAlgorithm.SM2PKE}),
    }
)

# The algorithm a key's CSR is signed with (RFC 4055 / RFC 5758 / GM/T 0006).
CSR_SIGNATURE_ALGORITHMS: Mapping[KeySpec, SignatureAlgorithm] = MappingProxyType(
    {
        KeySpec.RSA_2048: SignatureAlgorithm.SHA256_RSA,
        KeySpec.EC_P256: SignatureAlgorithm.SHA256_ECDSA,
        KeySpec.EC_SM2: SignatureAlgorithm.SM3_SM2,
    }
)

# The hash each sign algorithm applies to a RAW message; a DIGEST is its output.
SIGN_HASHES: Mapping[SignAlgorithm, str] = MappingProxyType(
    {
        SignAlgorithm.RSA_PKCS1_SHA_256: "sha256",
        SignAlgorithm.RSA_PSS_SHA_256: "sha256",
        SignAlgorithm.ECDSA_SHA_256: "sha256",
        SignAlgorithm.SM2DSA: "sm3",
    }
)

MAX_RAW_MESSAGE = 4096  # bytes; the API's limit for MessageType=RAW
DIGEST_LENGTH = 32  # SHA-256 output, or the SM3 value e of GB/T 32918.2 6.1

# Largest plaintext per (key spec, algorithm). OAEP: k - 2*hLen - 2 for a 256-byte
# modulus (RFC 8017 7.1.1): 214 with SHA-1, 190 with SHA-256. SM2PKE: the KMS API's 6047.
MAX_PLAINTEXT: Mapping[tuple[KeySpec, EncryptionAlgorithm], int] = MappingProxyType(
    {
        (KeySpec.RSA_2048, EncryptionAlgorithm.RSAES_OAEP_SHA_1): 214,
        (KeySpec.RSA_2048, EncryptionAlgorithm.RSAES_OAEP_SHA_256): 190,
        (KeySpec.EC_SM2, EncryptionAlgorithm.SM2PKE): 6047,
    }
)


def _names(members: Iterable[enum.Enum]) -> str:
    return ", ".join(sorted(str(m.value) for m in members))


def _hint(value: str, members: Iterable[enum.Enum]) -> str:
    """"; KMS uses EC_P256" / "; did you mean RAW?" for a misspelled value, or ""."""
    return spelling_hint(value, [str(m.value) for m in members],
                         other_api=KMS_KEY_SPEC_FOR_PCA, this_api="KMS")


def parse_key_spec(value: str) -> KeySpec:
    """Map the ``KeySpec`` parameter to a KeySpec."""
    try:
        return KeySpec(value)
    except ValueError:
        raise InvalidArgument(
            f"KeySpec '{value}' is not supported{_hint(value, KeySpec)}; "
            f"valid values: {_names(KeySpec)}",
            reason="InvalidParameter.KeySpec",
        ) from None


def parse_protection_level(value: str | None) -> ProtectionLevel:
    """Map ``ProtectionLevel`` to a ProtectionLevel; absent or empty means SOFTWARE."""
    if not value:
        return ProtectionLevel.SOFTWARE
    try:
        return ProtectionLevel(value)
    except ValueError:
        raise InvalidArgument(
            f"ProtectionLevel '{value}' is not supported{_hint(value, ProtectionLevel)}; "
            f"valid values: {_names(ProtectionLevel)}",
            reason="InvalidParameter.ProtectionLevel",
        ) from None


def parse_message_type(value: str | None) -> MessageType:
    """Map ``MessageType`` to a MessageType; absent or empty means RAW."""
    if not value:
        return MessageType.RAW
    try:
        return MessageType(value)
    except ValueError:
        raise InvalidArgument(
            f"MessageType '{value}' is not supported{_hint(value, MessageType)}; "
            f"valid values: {_names(MessageType)}",
            reason="InvalidParameter.MessageType",
        ) from None


def parse_sign_algorithm(key_spec: KeySpec, value: str) -> SignAlgorithm:
    """Map ``Algorithm`` to a SignAlgorithm allowed for ``key_spec``."""
    allowed = SIGN_ALGORITHMS[key_spec]
    try:
        algorithm = SignAlgorithm(value)
    except ValueError:
        algorithm = None
    if algorithm not in allowed:
        raise InvalidArgument(
            f"Algorithm '{value}' cannot sign with a {key_spec.value} key"
            f"{_hint(value, allowed)}; use {_names(allowed)}",
            reason="InvalidParameter.Algorithm",
        )
    assert algorithm is not None
    return algorithm


def parse_encryption_algorithm(key_spec: KeySpec, value: str) -> EncryptionAlgorithm:
    """Map ``Algorithm`` to an EncryptionAlgorithm allowed for ``key_spec``."""
    allowed = ENCRYPTION_ALGORITHMS[key_spec]
    try:
        algorithm = EncryptionAlgorithm(value)
    except ValueError:
        algorithm = None
    if algorithm not in allowed:
        use = f"use {_names(allowed)}" if allowed else "this key spec does not encrypt"
        raise InvalidArgument(
            f"Algorithm '{value}' cannot encrypt with a {key_spec.value} key"
            f"{_hint(value, allowed)}; {use}",
            reason="InvalidParameter.Algorithm",
        )
    assert algorithm is not None
    return algorithm


def check_message(message: bytes, message_type: MessageType, algorithm: SignAlgorithm) -> bytes:
    """Check ``Message`` (already base64-decoded) against its MessageType; returns it."""
    if message_type is MessageType.DIGEST:
        if len(message) != DIGEST_LENGTH:
            what = (
                "SM3 value e (GB/T 32918.2 6.1)"
                if algorithm is SignAlgorithm.SM2DSA
                else ("SHA-256 digest")
            )
            raise InvalidArgument(
                f"Message is {len(message)} bytes; with MessageType DIGEST it must be the "
                f"{DIGEST_LENGTH}-byte {what}",
                reason="InvalidParameter.Message",
            )
        return message
    if len(message) > MAX_RAW_MESSAGE:
        raise InvalidArgument(
            f"Message is {len(message)} bytes; with MessageType RAW at most "
            f"{MAX_RAW_MESSAGE} bytes are allowed (send a DIGEST for longer data)",
            reason="InvalidParameter.Message",
        )
    return message


def check_plaintext(key_spec: KeySpec, algorithm: EncryptionAlgorithm, plaintext: bytes) -> bytes:
    """Check ``Plaintext`` (already base64-decoded) fits ``algorithm``; returns it."""
    limit = MAX_PLAINTEXT[(key_spec, algorithm)]
    if not plaintext or len(plaintext) > limit:
        raise InvalidArgument(
            f"Plaintext is {len(plaintext)} bytes; {algorithm.value} with a {key_spec.value} "
            f"key takes 1 to {limit} bytes",
            reason="InvalidParameter.Plaintext",
        )
    return plaintext


@dataclass(frozen=True)
class SignInput:
    """A validated CertificatePrivateKeySign / CertificatePublicKeyVerify input."""

    key_spec: KeySpec
    algorithm: SignAlgorithm
    message_type: MessageType
    message: bytes

    def __post_init__(self) -> None:
        if self.algorithm not in SIGN_ALGORITHMS[self.key_spec]:
            raise InvalidArgument(
                f"Algorithm '{self.algorithm.value}' cannot sign with a "
                f"{self.key_spec.value} key; use {_names(SIGN_ALGORITHMS[self.key_spec])}",
                reason="InvalidParameter.Algorithm",
            )
        check_message(self.message, self.message_type, self.algorithm)

    @classmethod
    def parse(
        cls, key_spec: KeySpec, algorithm: str, message: bytes, message_type: str | None
    ) -> SignInput:
        """Validate the API's string parameters into a SignInput."""
        return cls(
            key_spec=key_spec,
            algorithm=parse_sign_algorithm(key_spec, algorithm),
            message_type=parse_message_type(message_type),
            message=message,
        )
