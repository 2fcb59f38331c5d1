"""Errors of the token layer. hsm/ never imports service/; service maps these to its family."""

from __future__ import annotations


class HsmError(Exception):
    """Base of every token-layer error."""


class TokenConfigError(HsmError):
    """The token configuration is invalid (missing module, empty label, unreadable PIN)."""


class TokenUnavailable(HsmError):
    """The token cannot be reached, or a session could not be re-established."""


class PinIncorrect(HsmError):
    """The token refused the PIN. Never retried: retries would lock the token."""


class PinLocked(HsmError):
    """The token's user PIN is locked."""


class KeyNotFound(HsmError):
    """No key with that CKA_ID exists in the token."""


class KeyExists(HsmError):
    """A key with that CKA_ID or label already exists; we never generate over it."""


class MechanismUnavailable(HsmError):
    """The token offers no mechanism for the requested operation (e.g. SM2 on SoftHSM)."""


class KeyNotExportable(HsmError):
    """The token refused to give the key out (CKR_KEY_UNEXTRACTABLE and friends)."""


class KeyAttributeViolation(HsmError):
    """A generated key's attributes do not prove non-exportability; the key was destroyed."""
