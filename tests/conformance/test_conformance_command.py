"""`hsmca conformance` on two PKCS#11 implementations: SoftHSM and opencryptoki's software token.

Each untouched token conforms (exit 0); on each, two control keys prove the check can fail
(exit 1, naming the route): one generated extractable and not sensitive, one imported with
C_CreateObject. Key types a token cannot generate are skipped with the reason; a token on
which nothing can be tested is exit 2. Nothing here mocks PKCS#11.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_support import (
    Target,
    generate_exportable_control,
    import_control,
    run_conformance,
    run_hsmca,
    run_module,
    verdicts,
)
from pkcs11 import Attribute, ObjectClass

from hsm.keys import destroy_key

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PASSING = {"REFUSED", "NOT_OFFERED", "HOLDS"}
ALL_TYPES = {"RSA_2048", "RSA_3072", "RSA_4096", "EC_P256", "EC_P384", "EC_P521", "EC_SM2"}


@pytest.fixture(scope="module", params=["softhsm", "opencryptoki"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each token implementation in turn, with the Token the test inspects it through."""
    if request.param == "softhsm":
        return Target(
            "softhsm",
            SOFTHSM_MODULE,
            "hsmca-hsm",
            request.getfixturevalue("user_pin"),
            request.getfixturevalue("hsm_token"),
            "SoftHSM project",
        )
    ock = request.getfixturevalue("ock")
    return Target(
        "opencryptoki",
        ock.module,
        ock.label,
        ock.user_pin,
        request.getfixturevalue("ock_token"),
        "IBM Corp.",
    )


def _private_keys(token: Any, key_id: bytes) -> list[Any]:
    template = {Attribute.ID: key_id, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    return token.run(lambda s: list(s.get_objects(template)))


def _labels(token: Any) -> list[str]:
    return token.run(lambda s: [o[Attribute.LABEL] for o in s.get_objects({})])


@pytest.fixture
def controls(target: Target) -> Iterator[list[bytes]]:
    """Control key ids to destroy after the test."""
    ids: list[bytes] = []
    yield ids
    for key_id in ids:
        destroy_key(target.token, key_id)


def test_untouched_token_conforms(target: Target, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    done = run_conformance(target, "--json", "--report", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["conforms"] is True
    assert document["exit_status"] == 0
    assert document["token"]["manufacturer"] == target.manufacturer
    assert document["token"]["label"] == target.label
    assert document["token"]["library_version"]
    types = {k["key_type"]: k for k in document["key_types"]}
    assert set(types) == ALL_TYPES
    tested = {name for name, k in types.items() if k["status"] == "TESTED"}
    skipped = {name: k["reason"] for name, k in types.items() if k["status"] == "SKIPPED"}
    assert "EC_SM2" in skipped and "SM2" in skipped["EC_SM2"]
    if target.kind == "softhsm":
        assert tested == ALL_TYPES - {"EC_SM2"}
    else:
        # opencryptoki 3.8's software token has no EC key generation: skipped, with why.
        assert tested == {"RSA_2048", "RSA_3072", "RSA_4096"}
        for curve in ("EC_P256", "EC_P384", "EC_P521"):
            assert "CKM_EC_KEY_PAIR_GEN" in skipped[curve]
    results = document["results"]
    assert {r["key_type"] for r in results} == tested
    assert all(r["verdict"] in PASSING for r in results), [
        r for r in results if r["verdict"] not in PASSING
    ]
    routes = {(r["key_type"], r["route"]): (r["return_code"], r["verdict"]) for r in results}
    assert routes["RSA_2048", "C_GetAttributeValue CKA_PRIVATE_EXPONENT"] == (
        "CKR_ATTRIBUTE_SENSITIVE",
        "REFUSED",
    )
    for route in (
        "attribute CKA_LOCAL is true",
        "attribute CKA_ALWAYS_SENSITIVE is true",
        "attribute CKA_NEVER_EXTRACTABLE is true",
        "attributes unchanged after the attempts",
    ):
        assert routes["RSA_4096", route] == ("CKR_OK", "HOLDS")
    for route in (
        "C_SetAttributeValue CKA_EXTRACTABLE=true",
        "C_SetAttributeValue CKA_SENSITIVE=false",
        "C_CopyObject CKA_EXTRACTABLE=true",
        "C_CopyObject CKA_SENSITIVE=false",
    ):
        assert routes["RSA_3072", route][1] == "REFUSED"
    wrap = {m: routes["RSA_2048", f"C_WrapKey CKM_{m}"] for m in (
        "AES_KEY_WRAP", "AES_KEY_WRAP_PAD", "AES_CBC_PAD", "DES3_CBC_PAD", "RSA_PKCS",
        "RSA_PKCS_OAEP")}
    assert wrap["RSA_PKCS_OAEP"] == ("CKR_KEY_UNEXTRACTABLE", "REFUSED")
    if target.kind == "softhsm":
        assert wrap["AES_KEY_WRAP_PAD"] == ("CKR_KEY_UNEXTRACTABLE", "REFUSED")
        assert routes["EC_P521", "C_GetAttributeValue CKA_VALUE"][0] == "CKR_ATTRIBUTE_SENSITIVE"
    else:
        assert wrap["AES_KEY_WRAP_PAD"] == ("-", "NOT_OFFERED")
        assert wrap["AES_CBC_PAD"] == ("CKR_KEY_UNEXTRACTABLE", "REFUSED")
        assert wrap["DES3_CBC_PAD"] == ("CKR_KEY_UNEXTRACTABLE", "REFUSED")
    # The auditor's document says the same.
    markdown = report.read_text()
    assert markdown.startswith("# HSM-protection conformance report")
    assert "**Result: CONFORMS**" in markdown
    assert f"| manufacturer | {target.manufacturer} |" in markdown
    assert "| RSA_2048 | " in markdown and "C_WrapKey CKM_RSA_PKCS_OAEP" in markdown
    # Every key it made is gone.
    assert not [label for label in _labels(target.token) if label.startswith("hsmca-conformance")]


def test_table_on_the_terminal(target: Target) -> None:
    done = run_conformance(target, "--key-type", "RSA_2048")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"manufacturer:         {target.manufacturer}" in out
    assert "key type | key id" in out
    assert "C_GetAttributeValue CKA_PRIVATE_EXPONENT | CKR_ATTRIBUTE_SENSITIVE | REFUSED" in out
    assert "every route REFUSED or NOT_OFFERED, every attribute check HOLDS (exit 0)" in out


def test_control_generated_extractable_and_not_sensitive_fails(
    target: Target, controls: list[bytes]
) -> None:
    key_id = generate_exportable_control(target.token)
    controls.append(key_id)
    done = run_conformance(target, "--json", "--key-id", key_id.hex())
    assert done.returncode == 1, done.stdout + done.stderr
    found = verdicts(done.stdout)
    assert found["C_GetAttributeValue CKA_PRIVATE_EXPONENT"] == ("CKR_OK", "EXPORTED")
    assert found["attribute CKA_SENSITIVE is true"] == ("CKR_OK", "VIOLATED")
    assert found["attribute CKA_NEVER_EXTRACTABLE is true"] == ("CKR_OK", "VIOLATED")
    # Each token gives the key out under wrapping with the mechanisms it has.
    wrapped_with = "AES_KEY_WRAP_PAD" if target.kind == "softhsm" else "AES_CBC_PAD"
    assert found[f"C_WrapKey CKM_{wrapped_with}"] == ("CKR_OK", "EXPORTED")
    # The table names the routes that failed.
    table = run_conformance(target, "--key-id", key_id.hex())
    assert table.returncode == 1
    assert "checks FAILED: " in table.stdout and table.stdout.rstrip().endswith("(exit 1)")
    assert "RSA_2048 C_GetAttributeValue CKA_PRIVATE_EXPONENT: EXPORTED" in table.stdout
    # Copies the check made were destroyed: still one private key with that CKA_ID.
    assert len(_private_keys(target.token, key_id)) == 1


def test_control_imported_key_fails(target: Target, controls: list[bytes]) -> None:
    key_id = import_control(target.token)
    controls.append(key_id)
    done = run_conformance(target, "--json", "--key-id", key_id.hex())
    assert done.returncode == 1, done.stdout + done.stderr
    found = verdicts(done.stdout)
    # Imported sensitive and unextractable: every export route is refused...
    exports = {r: v for r, v in found.items() if not r.startswith("attribute")}
    assert all(v[1] in {"REFUSED", "NOT_OFFERED"} for v in exports.values()), exports
    # ...and the attribute semantics show the key was not generated in the token.
    assert found["attribute CKA_LOCAL is true"] == ("CKR_OK", "VIOLATED")
    imported = "attribute CKA_NEVER_EXTRACTABLE is false on a key not generated in the token"
    if target.kind == "softhsm":
        # SoftHSM 2.6.1 reads CKA_NEVER_EXTRACTABLE false for an imported key, as it must.
        assert found[imported] == ("CKR_OK", "HOLDS")
        assert found["attribute CKA_NEVER_EXTRACTABLE is true"] == ("CKR_OK", "VIOLATED")
    else:
        # opencryptoki 3.8.1 claims CKA_NEVER_EXTRACTABLE (and ALWAYS_SENSITIVE) true for a
        # key that came from outside: that check fails on its own (measured).
        assert found[imported] == ("CKR_OK", "VIOLATED")
    table = run_conformance(target, "--key-id", key_id.hex())
    assert table.returncode == 1
    assert "RSA_2048 attribute CKA_LOCAL is true: VIOLATED" in table.stdout


def test_no_key_type_the_token_can_generate_is_exit_2(target: Target) -> None:
    # SM2 on either; the curves too on opencryptoki, which has no EC key generation.
    types = ["EC_SM2"] if target.kind == "softhsm" else ["EC_P256", "EC_P384", "EC_SM2"]
    done = run_conformance(target, *[a for t in types for a in ("--key-type", t)])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "can generate none of the key types" in done.stderr
    assert "SKIPPED" in done.stdout
    assert "Traceback" not in done.stderr


def _config(tmp_path: Path, module: str, label: str) -> Path:
    path = tmp_path / "hsmca.toml"
    path.write_text(
        f'[hsm]\nmodule = "{module}"\ntoken_label = "{label}"\n'
        'pin_source = "env:HSMCA_TEST_PIN"\n'
    )
    return path


def test_no_arguments_checks_the_configured_hsm_token(target: Target, tmp_path: Path) -> None:
    config = _config(tmp_path, target.module, target.label)
    done = run_hsmca(
        "--config",
        str(config),
        "conformance",
        "--json",
        "--key-type",
        "RSA_2048",
        env={"HSMCA_TEST_PIN": target.pin},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["module"] == target.module
    assert document["token"]["label"] == target.label


def test_options_override_the_configuration(
    user_pin: str, software_token: Any, tmp_path: Path
) -> None:
    # The configuration names a token that does not exist; the option names the real one.
    config = _config(tmp_path, SOFTHSM_MODULE, "no-such-token")
    args = ["--config", str(config), "conformance", "--json", "--key-type", "EC_P256"]
    env = {"HSMCA_TEST_PIN": user_pin}
    failed = run_hsmca(*args, env=env)
    assert failed.returncode == 2
    assert "no token labelled 'no-such-token'" in failed.stderr
    done = run_hsmca(*args, "--token-label", "hsmca-software", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["token"]["label"] == "hsmca-software"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--module", "/nonexistent/libpkcs11.so", "--token-label", "hsmca-hsm"], "does not exist"),
        (["--module", SOFTHSM_MODULE, "--token-label", "no-such-token"], "no token labelled"),
    ],
)
def test_config_errors_are_exit_2_without_traceback(
    user_pin: str, args: list[str], message: str
) -> None:
    env = {"HSMCA_TEST_PIN": user_pin}
    pin = ["--pin-source", "env:HSMCA_TEST_PIN"]
    # The console script, and the module on its own (no service configuration at all).
    for done in (run_hsmca("conformance", *args, *pin, env=env), run_module(*args, *pin, env=env)):
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
