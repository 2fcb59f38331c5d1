"""One long-lived, logged-in PKCS#11 session per token per process, used by one thread at a time.

Why a lock around every call: python-pkcs11 calls ``C_Initialize(NULL)``, so SoftHSM runs
without internal locking; two threads in the token at once crashed the process and once
corrupted the token (docs/architecture.md, "PKCS#11 facts"). We scale with processes instead.
The lock belongs to the module, not to a Token: two Tokens of one module in a process (two
roles, or a second Token opened beside the first) share SoftHSM's unlocked state, so a thread
in one of them keeps every other thread out of the whole module.

Why the session is never closed per request: ``Session.close()`` calls ``C_Logout``, which
logs out every session of the process. A session lives as long as the process; when the
token invalidates it (``SessionHandleInvalid``, ``UserNotLoggedIn``, ``DeviceRemoved``,
``SessionClosed``) we reopen, log in, forget cached key handles and retry the call once.
A wrong or locked PIN is never retried: retries would lock the token.

Why a token fault re-initialises the module: measured with SoftHSM, a token directory that
is unreadable or moved away for a moment makes every cached key handle answer
``ObjectHandleInvalid`` for good, even after the directory is back, and opening a new
session answers ``GeneralError`` (the module's view of the token is gone). Only
``C_Finalize`` + ``C_Initialize`` with the directory back brings the token back. So after
any error of :data:`_RECOVERABLE` a Token drops its session and every cached handle and
reopens; if that fails it re-initialises the module (with every other Token of the module
held, see :meth:`Token._reinitialize`). While that keeps failing the Token is *down*
(:attr:`Token.fault` says why): calls fail at once with :class:`TokenUnavailable`, and a new
attempt to recover is made at most every :data:`RECOVERY_INTERVAL_SECONDS`, by the next call
or by :meth:`Token.probe`, which the service's health check calls every second.

Why opening a token may re-initialise the module: SoftHSM's file store reads the token
directory once, at ``C_Initialize``, without a consistent snapshot. A process that
initialises the module while another process writes the token's files (every login
rewrites ``token.object``) may find the token missing (``NoSuchToken``), half-read
(``UserPinNotInitialized``) or unreadable (``GeneralError``). Measured here with four
processes started at once, as ``make serve`` starts its workers: 13 of 160 failed to open.
Retrying the lookup alone does not help (the store is not read again); finalising and
initialising the module again does: all 27 failures in 320 processes opened on the first or
second retry. Other Tokens of the process lose their sessions with it and open new ones on
their next call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, ObjectClass

from hsm.config import TokenConfig
from hsm.errors import (
    HsmError,
    KeyNotFound,
    PinIncorrect,
    PinLocked,
    TokenConfigError,
    TokenUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Return codes after which a fresh session (and login, or a re-initialised module) may
# succeed. ObjectHandleInvalid/KeyHandleInvalid: our cached handles outlived the token's view
# of its objects. GeneralError/DeviceError/FunctionFailed: what SoftHSM answers while its
# token directory cannot be read. A plain PKCS11Error is what python-pkcs11 raises for
# CKR_CRYPTOKI_NOT_INITIALIZED, after a re-initialisation failed.
_RECOVERABLE: tuple[type[Exception], ...] = (
    pkcs11.exceptions.SessionHandleInvalid,
    pkcs11.exceptions.SessionClosed,
    pkcs11.exceptions.UserNotLoggedIn,
    pkcs11.exceptions.DeviceRemoved,
    pkcs11.exceptions.TokenNotPresent,
    pkcs11.exceptions.TokenNotRecognised,
    pkcs11.exceptions.ObjectHandleInvalid,
    pkcs11.exceptions.KeyHandleInvalid,
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.DeviceError,
    pkcs11.exceptions.FunctionFailed,
)

# Of those, the codes a working token also answers for a failed operation (SoftHSM: a
# GeneralError for an RSA decryption with bad padding): a fault only if the token then
# fails C_GetTokenInfo too.
_AMBIGUOUS: tuple[type[Exception], ...] = (
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.DeviceError,
    pkcs11.exceptions.FunctionFailed,
)

#: Seconds between two attempts to bring a token back while it is down.
RECOVERY_INTERVAL_SECONDS = 0.5


def _not_initialized(e: BaseException) -> bool:
    # python-pkcs11 0.10 has no class for CKR_CRYPTOKI_NOT_INITIALIZED: it raises the bare
    # PKCS11Error (exact type), which nothing else raises.
    return type(e) is pkcs11.exceptions.PKCS11Error


# Errors of a first open that a concurrent writer of SoftHSM's files can cause (see above).
_TRANSIENT_AT_OPEN: tuple[type[Exception], ...] = (
    TokenUnavailable,  # NoSuchToken, mapped by Token._open
    pkcs11.exceptions.GeneralError,
    pkcs11.exceptions.UserPinNotInitialized,
    pkcs11.exceptions.TokenNotRecognised,
)
#: Opens tried before a Token gives up (waits of 50, 100, 150 and 200 ms in between).
OPEN_ATTEMPTS = 5
# Tokens are opened one at a time per process, and every open Token is known, so that a
# re-initialisation runs while no other thread is inside the module (see _reinitialize).
_OPENING = threading.Lock()
_OPEN_TOKENS: weakref.WeakSet[Token] = weakref.WeakSet()
# One re-entrant lock per loaded PKCS#11 module (by its file's real path), shared by every
# Token of that module in this process: see "Why a lock around every call" above.
_MODULE_LOCKS: dict[str, threading.RLock] = {}
_MODULE_LOCKS_GUARD = threading.Lock()


def module_lock(module: str) -> threading.RLock:
    """The lock every call into ``module`` holds in this process."""
    with _MODULE_LOCKS_GUARD:
        return _MODULE_LOCKS.setdefault(os.path.realpath(module), threading.RLock())


def _pause(attempt: int) -> None:
    time.sleep(0.05 * attempt)


def _load_tongsuo_first() -> None:
    """Load tongsuopy's bundled Tongsuo before any PKCS#11 module.

    opencryptoki's module loads the system libcrypto into the process's global symbol
    scope; tongsuopy's backend loaded after it then fails to parse SM2 keys
    ("Unsupported key type"; measured with opencryptoki 3.8.1), loaded before it works.
    """
    with contextlib.suppress(ImportError):
        import tongsuopy.backends.tongsuo.backend  # noqa: F401


def load_library(module: str) -> Any:
    """Load and initialise a PKCS#11 module once per process (python-pkcs11 caches it)."""
    _load_tongsuo_first()
    try:
        lib = pkcs11.lib(module)
        if not lib.initialized:
            lib.initialize()
        return lib
    except pkcs11.exceptions.PKCS11Error as e:
        raise TokenConfigError(f"cannot load PKCS#11 module {module!r}: {e}") from e


class Token:
    """A token role's single session; every PKCS#11 call goes through :meth:`run`."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._lock = module_lock(config.module)
        self._pid = os.getpid()
        self._lib = load_library(config.module)
        self._session: Any = None
        # CKA_ID -> (object class, handle object); valid only for the current session.
        self._objects: dict[tuple[bytes, ObjectClass], Any] = {}
        self.reopen_count = 0
        # Why the token is down (None while it works), and when to try to recover next.
        self._fault: str | None = None
        self._retry_at = 0.0
        # Set once the token refused the PIN: never logged in with it again (see above).
        self._pin_refused: HsmError | None = None
        with _OPENING, self._lock:
            self._open_first()
        _OPEN_TOKENS.add(self)

    @property
    def label(self) -> str:
        """The token label this session is bound to."""
        return self.config.token_label

    def _open(self) -> None:
        try:
            token = self._lib.get_token(token_label=self.config.token_label)
        except pkcs11.exceptions.NoSuchToken as e:
            raise TokenUnavailable(
                f"no token labelled {self.config.token_label!r} in module {self.config.module!r}"
            ) from e
        except pkcs11.exceptions.MultipleTokensReturned as e:
            raise TokenConfigError(
                f"more than one token labelled {self.config.token_label!r}"
            ) from e
        try:
            self._session = token.open(rw=True, user_pin=self.config.pin)
        except pkcs11.exceptions.PinIncorrect:
            raise PinIncorrect(
                f"token {self.config.token_label!r} refused the PIN (CKR_PIN_INCORRECT); "
                "check the configured pin_source"
            ) from None
        except pkcs11.exceptions.PinLocked:
            raise PinLocked(
                f"token {self.config.token_label!r}: the user PIN is locked (CKR_PIN_LOCKED)"
            ) from None
        except pkcs11.exceptions.PinLenRange:
            raise PinIncorrect(
                f"token {self.config.token_label!r} refused the PIN: wrong length "
                "(CKR_PIN_LEN_RANGE)"
            ) from None
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # Another session of this process is logged in already; the new one shares it.
            self._session = token.open(rw=True)
        self._objects.clear()

    def _open_first(self) -> None:
        """Open, re-initialising the module after an error a concurrent writer can cause."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                self._open()
                return
            except _TRANSIENT_AT_OPEN as e:
                if attempt == OPEN_ATTEMPTS:
                    if isinstance(e, TokenUnavailable):
                        raise
                    raise TokenUnavailable(
                        f"token {self.label!r} could not be opened ({type(e).__name__}) after "
                        f"{OPEN_ATTEMPTS} attempts"
                    ) from e
                log.warning(
                    "token %s: %s while opening; re-initialising the module and retrying",
                    self.label,
                    type(e).__name__,
                )
                _pause(attempt)
                self._reinitialize()

    def _reinitialize(self) -> None:
        """C_Finalize + C_Initialize, holding the module's lock (no other Token is inside)."""
        others = [t for t in list(_OPEN_TOKENS) if t._lib is self._lib and t is not self]
        with self._lock:
            try:
                self._lib.reinitialize()
            finally:
                for token in others:
                    # Their session and object handles died with C_Finalize (and the numbers
                    # may be given out again): the next run() opens and logs in anew.
                    token._session = None
                    token._objects.clear()
                    token.reopen_count += 1

    def _reopen_others(self) -> None:
        """After a re-initialisation that worked, open the module's other Tokens again now
        (their locks are held), so they are back at the same moment."""
        for token in list(_OPEN_TOKENS):
            if token is self or token._lib is not self._lib or token._pin_refused is not None:
                continue
            try:
                token._open()
            except (pkcs11.exceptions.PKCS11Error, HsmError) as e:
                log.warning("token %s: %s while reopening after re-initialisation",
                            token.label, type(e).__name__)
                continue
            if token._fault is not None:
                log.warning("token %s is back (was: %s)", token.label, token._fault)
            token._fault = None

    def _reopen(self) -> None:
        old, self._session = self._session, None
        self._objects.clear()
        if old is not None:
            self.reopen_count += 1
            try:
                old.close()
            except pkcs11.exceptions.PKCS11Error:
                pass  # it is already gone; that is why we are here
        self._open()

    @property
    def fault(self) -> str | None:
        """Why the token cannot be used now, or None while it works."""
        return self._fault

    def _down(self, reason: str) -> TokenUnavailable:
        if self._fault is None:
            log.error("token %s is down: %s", self.label, reason)
        self._fault = reason
        self._session = None
        self._objects.clear()
        self._retry_at = time.monotonic() + RECOVERY_INTERVAL_SECONDS
        return TokenUnavailable(f"token {self.label!r} is unavailable: {reason}")

    def _recover(self, cause: BaseException | None) -> None:
        """Reopen, or else re-initialise the module and open; raise TokenUnavailable if not.

        Called without holding the module's lock: it takes the process-wide opening lock and
        then the module's lock, in the order Token() takes them, so that two Tokens
        recovering at once cannot deadlock and no other thread is in the module during a
        re-initialisation.
        """
        with _OPENING, self._lock:
            if self._pin_refused is not None:
                raise TokenUnavailable(
                    f"token {self.label!r}: login refused, not retried: {self._pin_refused}"
                )
            if cause is None and self._session is not None and self._fault is None:
                return  # another thread brought it back meanwhile
            if cause is None and time.monotonic() < self._retry_at:
                raise TokenUnavailable(f"token {self.label!r} is unavailable: {self._fault}")
            try:
                try:
                    if not self._lib.initialized:
                        raise pkcs11.exceptions.PKCS11Error("module not initialised")
                    self._reopen()
                except (pkcs11.exceptions.PKCS11Error, TokenUnavailable) as e:
                    log.warning("token %s: reopening failed (%s); re-initialising the module",
                                self.label, type(e).__name__)
                    self._reinitialize()
                    self._open()
                    self._reopen_others()
            except (PinIncorrect, PinLocked) as e:
                self._pin_refused = e
                raise self._down(f"login refused: {e}") from e
            except (pkcs11.exceptions.PKCS11Error, TokenUnavailable) as e:
                after = f" (after {type(cause).__name__})" if cause is not None else ""
                raise self._down(f"{type(e).__name__} while reopening{after}") from e
            if self._fault is not None:
                log.warning("token %s is back (was: %s)", self.label, self._fault)
            self._fault = None

    def run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(session)`` holding the token lock; recover a lost session once."""
        if os.getpid() != self._pid:
            # A PKCS#11 library must not be used across fork (PKCS#11 2.40 section 6.7.7).
            raise TokenUnavailable("token session used in a forked child; open a new Token")
        first: BaseException | None = None
        with self._lock:
            if self._session is not None and self._fault is None:
                try:
                    return fn(self._session)
                except _RECOVERABLE as e:
                    if isinstance(e, _AMBIGUOUS) and self._answers():
                        raise
                    first = e
                except pkcs11.exceptions.PKCS11Error as e:
                    if not _not_initialized(e):
                        raise
                    first = e
                log.warning("token %s: %s; reopening the session and retrying once",
                            self.label, type(first).__name__)
        self._recover(first)
        with self._lock:
            if self._session is None:
                raise TokenUnavailable(f"token {self.label!r} is unavailable: {self._fault}")
            try:
                return fn(self._session)
            except _RECOVERABLE as second:
                if isinstance(second, _AMBIGUOUS) and self._answers():
                    raise
                raise self._down(
                    f"{type(second).__name__} again after reopening the session"
                ) from second

    def _answers(self) -> bool:
        try:
            self._session.token.slot.get_token()  # C_GetTokenInfo
        except pkcs11.exceptions.PKCS11Error:
            return False
        return True

    def probe(self) -> bool:
        """Whether the token answers now (C_GetTokenInfo); brings a down token back if it can.

        SoftHSM answers C_GetTokenInfo with ``GeneralError`` while its token directory
        cannot be read, so this sees a fault before a signing call does.
        """
        try:
            self.run(lambda session: session.token.slot.get_token())
        except TokenUnavailable:
            return False
        return True

    def find_object(self, session: Any, key_id: bytes, object_class: ObjectClass) -> Any:
        """Look up a key object by CKA_ID within ``run``; cached for the session's lifetime."""
        cache_key = (key_id, object_class)
        found = self._objects.get(cache_key)
        if found is not None:
            return found
        objects = list(
            session.get_objects({Attribute.ID: key_id, Attribute.CLASS: object_class})
        )
        if not objects:
            # A token whose files cannot be read lists no objects: make sure it is the key
            # that is missing, not the token (GeneralError here is recovered by run()).
            session.token.slot.get_token()
            raise KeyNotFound(
                f"no {object_class.name.lower()} with id {key_id.hex()} in token {self.label!r}"
            )
        if len(objects) > 1:
            raise HsmError(
                f"{len(objects)} objects share id {key_id.hex()} in token {self.label!r}"
            )
        self._objects[cache_key] = objects[0]
        return objects[0]

    def forget(self, key_id: bytes) -> None:
        """Drop cached handles of a key (after it is destroyed)."""
        for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            self._objects.pop((key_id, cls), None)

    def invalidate_session_for_test(self) -> None:
        """Close the live session behind our back, as a token reset would (tests only)."""
        with self._lock:
            handle = self._session
            if handle is not None:
                handle.close()

    def close(self) -> None:
        """Log out and close; call once at process exit."""
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                except pkcs11.exceptions.PKCS11Error:
                    pass
                self._session = None
                self._objects.clear()

    def mechanisms(self) -> frozenset[Any]:
        """The mechanisms the token's slot advertises."""
        return self.run(lambda s: frozenset(s.token.slot.get_mechanisms()))
