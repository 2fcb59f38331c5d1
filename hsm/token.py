"""One long-lived, logged-in PKCS#11 session per token per process, used by one thread at a time.

Why a lock around every call: python-pkcs11 calls ``C_Initialize(NULL)``, so SoftHSM runs
without internal locking; two threads in the token at once crashed the process and once
corrupted the token (docs/architecture.md, "PKCS#11 facts"). We scale with processes instead.

Why the session is never closed per request: ``Session.close()`` calls ``C_Logout``, which
logs out every session of the process. A session lives as long as the process; when the
token invalidates it (``SessionHandleInvalid``, ``UserNotLoggedIn``, ``DeviceRemoved``,
``SessionClosed``) we reopen, log in, forget cached key handles and retry the call once.
A wrong or locked PIN is never retried: retries would lock the token.

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

# Return codes after which a fresh session (and login) may succeed.
_RECOVERABLE: tuple[type[Exception], ...] = (
    pkcs11.exceptions.SessionHandleInvalid,
    pkcs11.exceptions.SessionClosed,
    pkcs11.exceptions.UserNotLoggedIn,
    pkcs11.exceptions.DeviceRemoved,
    pkcs11.exceptions.TokenNotPresent,
)


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
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._lib = load_library(config.module)
        self._session: Any = None
        # CKA_ID -> (object class, handle object); valid only for the current session.
        self._objects: dict[tuple[bytes, ObjectClass], Any] = {}
        self.reopen_count = 0
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
        """C_Finalize + C_Initialize, with every other open Token of the module held."""
        others = sorted(
            (t for t in list(_OPEN_TOKENS) if t._lib is self._lib and t is not self), key=id
        )
        with contextlib.ExitStack() as held:
            for token in others:
                held.enter_context(token._lock)  # none of them is inside the module now
            self._lib.reinitialize()
            for token in others:
                # Their session and object handles died with C_Finalize (and the numbers
                # may be given out again): the next run() opens and logs in anew.
                token._session = None
                token._objects.clear()
                token.reopen_count += 1

    def _reopen(self) -> None:
        old, self._session = self._session, None
        self._objects.clear()
        self.reopen_count += 1
        if old is not None:
            try:
                old.close()
            except pkcs11.exceptions.PKCS11Error:
                pass  # it is already gone; that is why we are here
        self._open()

    def run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(session)`` holding the token lock; recover a lost session once."""
        if os.getpid() != self._pid:
            # A PKCS#11 library must not be used across fork (PKCS#11 2.40 section 6.7.7).
            raise TokenUnavailable("token session used in a forked child; open a new Token")
        with self._lock:
            if self._session is None:
                self._open()
            try:
                return fn(self._session)
            except _RECOVERABLE as first:
                log.warning(
                    "token %s: %s; reopening the session and retrying once",
                    self.label,
                    type(first).__name__,
                )
                try:
                    self._reopen()
                    return fn(self._session)
                except _RECOVERABLE as second:
                    self._session = None
                    raise TokenUnavailable(
                        f"token {self.label!r} unavailable after reopening the session "
                        f"({type(second).__name__})"
                    ) from second
                except (PinIncorrect, PinLocked) as e:
                    self._session = None
                    raise TokenUnavailable(
                        f"token {self.label!r}: session lost and login refused: {e}"
                    ) from e

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
