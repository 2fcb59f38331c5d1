"""The Token session: recovery, configuration errors, wrong PIN, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hsm_helpers import new_key_id, verify
from hsm_workers import sign_for

from hsm.config import TokenConfig, TokenRole
from hsm.errors import TokenConfigError, TokenUnavailable
from hsm.keys import GeneratedKey, KeySpec, destroy_key, generate_key_pair
from hsm.signing import SignMechanism, sign
from hsm.token import Token

REPO = Path(__file__).resolve().parents[2]
MODULE = os.environ.get("HSMCA_TEST_MODULE", "/usr/lib/softhsm/libsofthsm2.so")


@pytest.fixture(scope="module")
def keys(hsm_token: Any) -> Iterator[dict[KeySpec, GeneratedKey]]:
    """A P-256 and an RSA-2048 signing key, non-exportable."""
    made: dict[KeySpec, GeneratedKey] = {}
    try:
        for spec in (KeySpec.EC_P256, KeySpec.RSA_2048):
            key_id = new_key_id()
            made[spec] = generate_key_pair(
                hsm_token, spec, key_id=key_id, label=key_id.hex(), exportable=False
            )
        yield made
    finally:
        for key in made.values():
            destroy_key(hsm_token, key.key_id)


def test_invalidated_session_is_recovered(
    hsm_token: Any, keys: dict[KeySpec, GeneratedKey]
) -> None:
    key = keys[KeySpec.EC_P256]
    sign(hsm_token, key.key_id, SignMechanism.ECDSA_SHA256, b"warm the handle cache")
    before = hsm_token.reopen_count
    hsm_token.invalidate_session_for_test()
    signature = sign(hsm_token, key.key_id, SignMechanism.ECDSA_SHA256, b"after reset")
    assert hsm_token.reopen_count == before + 1
    verify(key.public_key_info, SignMechanism.ECDSA_SHA256, b"after reset", signature)
    # And the next call needs no further reopening.
    sign(hsm_token, key.key_id, SignMechanism.ECDSA_SHA256, b"again")
    assert hsm_token.reopen_count == before + 1


def test_missing_module_is_a_config_error(user_pin: str) -> None:
    with pytest.raises(TokenConfigError, match="does not exist"):
        TokenConfig(TokenRole.HSM, "/nonexistent/libpkcs11.so", "hsmca-hsm", user_pin)


def test_missing_token_label_is_unavailable(user_pin: str) -> None:
    with pytest.raises(TokenUnavailable, match="no token labelled 'no-such-token'"):
        Token(TokenConfig(TokenRole.HSM, MODULE, "no-such-token", user_pin))


_UNREADABLE_AT_START_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import hsm.token
    from hsm.config import TokenConfig, TokenRole
    from hsm.token import Token

    module, pin, token_object = sys.argv[1:4]
    # As another process writing the file at our C_Initialize leaves it: unreadable.
    os.rename(token_object, token_object + ".away")
    software = Token(TokenConfig(TokenRole.SOFTWARE, module, "hsmca-software", pin))
    software.run(lambda s: s.token.label)
    pauses = []

    def writer_done(attempt):
        pauses.append(attempt)
        if os.path.exists(token_object + ".away"):
            os.rename(token_object + ".away", token_object)

    hsm.token._pause = writer_done
    hsm_token = Token(TokenConfig(TokenRole.HSM, module, "hsmca-hsm", pin))
    print("hsm opened after pauses", pauses)
    print("hsm label", hsm_token.run(lambda s: s.token.label))
    # The software token's session died with the re-initialisation; it opens a new one.
    print("software label", software.run(lambda s: s.token.label), software.reopen_count)
    """
)


def test_token_unreadable_at_start_is_opened_after_reinitialising(tmp_path: Path) -> None:
    # A throwaway state (SOFTHSM2_CONF is read once per process) with both tokens; the hsm
    # token's file is away at the first C_Initialize, as a concurrent writer can leave it.
    subprocess.run([str(REPO / "softhsm" / "init-tokens.sh"), str(tmp_path)], check=True,
                   capture_output=True)
    pin = (tmp_path / "user.pin").read_text().strip()
    token_object = next(p for p in (tmp_path / "tokens").glob("*/token.object")
                        if b"hsmca-hsm " in p.read_bytes())
    done = subprocess.run(
        [sys.executable, "-c", _UNREADABLE_AT_START_SCRIPT, MODULE, pin, str(token_object)],
        cwd=REPO, env={**os.environ, "SOFTHSM2_CONF": str(tmp_path / "softhsm2.conf")},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "hsm opened after pauses [1]",
        "hsm label hsmca-hsm",
        "software label hsmca-software 1",
    ]


_WRONG_PIN_SCRIPT = textwrap.dedent(
    """
    import sys
    import pkcs11
    from hsm.config import TokenConfig, TokenRole
    from hsm.errors import PinIncorrect
    from hsm.token import Token

    module, label, good = sys.argv[1:4]
    try:
        Token(TokenConfig(TokenRole.HSM, module, label, "wrong-" + good))
    except PinIncorrect as e:
        print("PinIncorrect:", e)
    else:
        print("no error")
    flags = pkcs11.lib(module).get_token(token_label=label).flags
    print("locked:", bool(flags & pkcs11.TokenFlag.USER_PIN_LOCKED))
    Token(TokenConfig(TokenRole.HSM, module, label, good))  # the right PIN still works
    print("good pin ok")
    """
)


def test_wrong_pin_is_clear_and_not_retried(tmp_path: Path) -> None:
    # A throwaway token with its own softhsm2.conf: SOFTHSM2_CONF is read once per process,
    # and failed logins must never count against the shared test tokens.
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "pin-test",
            "--pin",
            "123456",
            "--so-pin",
            "654321",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "-c", _WRONG_PIN_SCRIPT, MODULE, "pin-test", "123456"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "PinIncorrect: token 'pin-test' refused the PIN (CKR_PIN_INCORRECT); "
        "check the configured pin_source"
    )
    assert "wrong-" not in done.stdout  # the PIN itself is never shown
    assert lines[1:] == ["locked: False", "good pin ok"]


def test_threads_sharing_one_token_are_serialised(
    hsm_token: Any, keys: dict[KeySpec, GeneratedKey]
) -> None:
    key = keys[KeySpec.EC_P256]
    errors: list[BaseException] = []
    results: list[tuple[bytes, bytes]] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(150):
                message = f"thread {n} message {i}".encode()
                signature = sign(hsm_token, key.key_id, SignMechanism.ECDSA_SHA256, message)
                with lock:
                    results.append((message, signature))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8 * 150
    for message, signature in results:
        verify(key.public_key_info, SignMechanism.ECDSA_SHA256, message, signature)


_TWO_TOKENS_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from hsm.config import TokenConfig, TokenRole
    from hsm.signing import SignMechanism, sign
    from hsm.token import Token

    module, pin, ec_id, rsa_id = sys.argv[1], sys.argv[2], *map(bytes.fromhex, sys.argv[3:5])
    # Two Tokens of one module in one process, as the service's roles are.
    tokens = [Token(TokenConfig(TokenRole.HSM, module, "hsmca-hsm", pin)) for _ in range(2)]
    jobs = [(ec_id, SignMechanism.ECDSA_SHA256), (rsa_id, SignMechanism.RSA_PKCS1_SHA256)]
    signed, errors = [], []

    def work(n):
        token, (key_id, mechanism) = tokens[n % 2], jobs[(n // 2) % 2]
        try:
            for i in range(120):
                message = f"{n}-{i}".encode()
                signature = sign(token, key_id, mechanism, message)
                signed.append((mechanism.value, message.hex(), signature.hex()))
        except BaseException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"errors": errors, "signed": signed}))
    """
)


def test_two_tokens_of_one_module_never_enter_it_at_once(
    user_pin: str, keys: dict[KeySpec, GeneratedKey]
) -> None:
    # SoftHSM runs without its own locking: threads using two Tokens of the module at once
    # would be inside it together (a crash, or a GeneralError, without the module's lock).
    # In a child process, so that a crash fails this test rather than the whole run.
    ec, rsa = keys[KeySpec.EC_P256], keys[KeySpec.RSA_2048]
    done = subprocess.run(
        [sys.executable, "-c", _TWO_TOKENS_SCRIPT, MODULE, user_pin, ec.key_id.hex(),
         rsa.key_id.hex()],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["errors"] == []
    assert len(result["signed"]) == 8 * 120
    public = {SignMechanism.ECDSA_SHA256: ec.public_key_info,
              SignMechanism.RSA_PKCS1_SHA256: rsa.public_key_info}
    for mechanism_name, message, signature in result["signed"]:
        mechanism = SignMechanism(mechanism_name)
        verify(public[mechanism], mechanism, bytes.fromhex(message), bytes.fromhex(signature))


@pytest.mark.slow
def test_two_processes_sign_concurrently(
    softhsm_state: Path, user_pin: str, keys: dict[KeySpec, GeneratedKey]
) -> None:
    conf = os.environ["SOFTHSM2_CONF"]
    jobs = [
        (keys[KeySpec.EC_P256], SignMechanism.ECDSA_SHA256),
        (keys[KeySpec.RSA_2048], SignMechanism.RSA_PKCS1_SHA256),
    ]
    ctx = multiprocessing.get_context("spawn")
    # Two workers, each with its own Token, both keys signing at once on both workers.
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [
            (
                key,
                mechanism,
                pool.submit(
                    sign_for, conf, MODULE, "hsmca-hsm", user_pin, key.key_id, mechanism.value, 1.5,
                    11,
                ),
            )
            for _ in range(2)
            for key, mechanism in jobs
        ]
        outcomes = [(key, mechanism, f.result(timeout=300)) for key, mechanism, f in futures]
    for key, mechanism, signed in outcomes:
        assert len(signed) > 10
        for message, signature in signed:
            verify(key.public_key_info, mechanism, message, signature)

    # The token is intact: a fresh session (another Token object) finds and uses the keys.
    fresh = Token(TokenConfig(TokenRole.HSM, MODULE, "hsmca-hsm", user_pin))
    for key, mechanism in jobs:
        signature = sign(fresh, key.key_id, mechanism, b"after the storm")
        verify(key.public_key_info, mechanism, b"after the storm", signature)
