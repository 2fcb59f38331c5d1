"""Configuration: defaults, TOML, environment overrides, validation messages, no PIN in repr."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from hsm.config import TokenRole
from service.config import ConfigError, export_softhsm2_conf, load_config


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hsmca.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path / "var")})
    state = tmp_path / "var"
    assert cfg.state_dir == state and cfg.source is None
    assert cfg.hsm.module == "/usr/lib/softhsm/libsofthsm2.so"
    assert cfg.hsm.token_label == "hsmca-hsm"
    assert cfg.software.token_label == "hsmca-software"
    assert cfg.hsm.pin_source == cfg.software.pin_source == f"file:{state}/softhsm/user.pin"
    assert cfg.hsm.softhsm2_conf == state / "softhsm" / "softhsm2.conf"
    assert cfg.database.url == f"sqlite:///{state}/hsmca.db"
    assert (cfg.grpc.listen, cfg.grpc.workers, cfg.grpc.max_threads, cfg.grpc.grace_seconds) == (
        "127.0.0.1:50051",
        0,
        16,
        10.0,
    )
    assert cfg.grpc.worker_count() == (os.cpu_count() or 1)
    assert cfg.grpc.pin_workers is True
    assert (cfg.http.listen, cfg.http.public_base_url) == (
        "127.0.0.1:8080",
        "http://127.0.0.1:8080",
    )
    assert (cfg.kms.region, cfg.kms.account_id) == ("cn-local", "000000000000")
    assert (cfg.policy.min_rsa_bits, cfg.policy.default_owner) == (2048, "default")
    assert (cfg.jobs.enabled, cfg.jobs.poll_seconds) == (True, 0.5)


def test_the_readme_sample_is_the_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's configuration sample is what an operator copies: it must load, and
    # every value it shows must be the default it claims to be.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1]
    sample = re.search(r"```toml\n(.*?)```", section, re.S)
    assert sample is not None
    monkeypatch.chdir(tmp_path)
    from_sample = load_config(_write(tmp_path, sample.group(1)), env={})
    assert dataclasses.replace(from_sample, source=None) == load_config(env={})


def test_default_state_dir_is_var_under_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).state_dir == tmp_path / "var"


def test_toml_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
state_dir = "{tmp_path / "state"}"
[hsm]
module = "/opt/hsm/lib.so"
token_label = "prod-ca"
pin_source = "env:HSM_PIN"
softhsm2_conf = ""
[software]
pin_source = "file:pins/sw.pin"
[database]
url = "postgresql+psycopg://ca:s3cret@db.example/hsmca"
[grpc]
listen = "[::]:9443"
workers = 4
max_threads = 32
grace_seconds = 2.5
pin_workers = false
[http]
public_base_url = "https://pki.example.com/"
[kms]
region = "cn-hangzhou"
account_id = "1234567890"
[policy]
min_rsa_bits = 3072
default_owner = "tenant-1"
""",
    )
    cfg = load_config(path, env={})
    assert cfg.source == Path(path)
    assert cfg.state_dir == tmp_path / "state"
    assert (cfg.hsm.module, cfg.hsm.token_label, cfg.hsm.pin_source, cfg.hsm.softhsm2_conf) == (
        "/opt/hsm/lib.so",
        "prod-ca",
        "env:HSM_PIN",
        None,
    )
    assert cfg.software.pin_source == f"file:{tmp_path / 'state' / 'pins' / 'sw.pin'}"
    assert cfg.software.token_label == "hsmca-software"
    assert cfg.database.url == "postgresql+psycopg://ca:s3cret@db.example/hsmca"
    assert "s3cret" not in repr(cfg)
    assert (cfg.grpc.listen, cfg.grpc.workers, cfg.grpc.max_threads) == ("[::]:9443", 4, 32)
    assert cfg.grpc.grace_seconds == 2.5 and cfg.grpc.worker_count() == 4
    assert cfg.grpc.pin_workers is False
    assert cfg.http.public_base_url == "https://pki.example.com"
    assert (cfg.kms.region, cfg.kms.account_id) == ("cn-hangzhou", "1234567890")
    assert (cfg.policy.min_rsa_bits, cfg.policy.default_owner) == (3072, "tenant-1")


def test_env_overrides_win(tmp_path: Path) -> None:
    path = _write(tmp_path, '[grpc]\nworkers = 4\n[database]\nurl = "sqlite:///a.db"\n')
    cfg = load_config(
        env={
            "HSMCA_CONFIG": path,
            "HSMCA_STATE_DIR": str(tmp_path / "s"),
            "HSMCA_GRPC_WORKERS": "2",
            "HSMCA_GRPC_GRACE_SECONDS": "0.5",
            "HSMCA_DATABASE_URL": "sqlite:///b.db",
            "HSMCA_HSM_PIN_SOURCE": "env:MY_PIN",
            "HSMCA_SOFTWARE_TOKEN_LABEL": "sw2",
            "HSMCA_HTTP_LISTEN": "0.0.0.0:80",
            "HSMCA_POLICY_MIN_RSA_BITS": "4096",
            "UNRELATED": "x",
        }
    )
    assert cfg.source == Path(path)
    assert cfg.grpc.workers == 2 and cfg.grpc.grace_seconds == 0.5
    assert cfg.database.url == f"sqlite:///{tmp_path / 's' / 'b.db'}"
    assert cfg.hsm.pin_source == "env:MY_PIN"
    assert cfg.software.token_label == "sw2"
    assert cfg.http.listen == "0.0.0.0:80"
    assert cfg.policy.min_rsa_bits == 4096


def test_explicit_path_beats_hsmca_config(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text("[grpc]\nworkers = 3\n")
    b = _write(tmp_path, "[grpc]\nworkers = 5\n")
    assert load_config(str(a), env={"HSMCA_CONFIG": b}).grpc.workers == 3


def test_absolute_and_memory_sqlite_urls_are_kept(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/x.db", "sqlite://", "sqlite:///:memory:"):
        assert load_config(env={"HSMCA_DATABASE_URL": url}).database.url == url


BAD_TOML = [
    ('[grpc]\nworkers = "x"\n', "grpc.workers: must be a non-negative integer, got 'x'"),
    ("[grpc]\nworkers = -1\n", "grpc.workers: must be a non-negative integer, got -1"),
    ("[grpc]\nworkers = true\n", "grpc.workers: must be a non-negative integer, got True"),
    ("[grpc]\nmax_threads = 0\n", "grpc.max_threads: must be a positive integer, got 0"),
    ("[grpc]\ngrace_seconds = -1\n", "grpc.grace_seconds: must be a non-negative number"),
    ('[grpc]\nlisten = "localhost"\n', "grpc.listen: must be HOST:PORT"),
    ('[grpc]\nlisten = "h:70000"\n', "grpc.listen: must be HOST:PORT"),
    ('[grpc]\nlisten = "::1:80"\n', "grpc.listen: an IPv6 host must be in brackets"),
    ('[http]\npublic_base_url = "ftp://x"\n', "http.public_base_url: must be an absolute http"),
    ('[http]\npublic_base_url = "http://x/?a=1"\n', "http.public_base_url: must not have a query"),
    ('[hsm]\npin_source = "1234"\n', "hsm.pin_source: must be 'env:NAME' or 'file:PATH'"),
    ('[hsm]\nmodule = ""\n', "hsm.module: must not be empty"),
    ('[software]\ntoken_label = "' + "x" * 33 + '"\n', "software.token_label: must be at most 32"),
    ("[kms]\naccount_id = 123\n", "kms.account_id: must be a string, got 123"),
    ('[kms]\naccount_id = "12a"\n', "kms.account_id: must be a string of digits"),
    ('[kms]\nregion = "CN Hangzhou"\n', "kms.region: must be lower-case"),
    ("[policy]\nmin_rsa_bits = 512\n", "policy.min_rsa_bits: must be an integer of at least 1024"),
    ('[policy]\ndefault_owner = "a b"\n', "policy.default_owner: must be 1-64 letters"),
    ('[database]\nurl = "not a url"\n', "database.url: not a valid database URL"),
    ("[grpc]\nworkerz = 2\n",
     "grpc.workerz: unknown key (known: grace_seconds, health_interval_seconds, insecure, listen"),
    ("[grcp]\nworkers = 2\n", "grcp: unknown section"),
    ('grpc = "x"\n', "grpc: must be a [grpc] table"),
    ("[grpc\n", "invalid TOML"),
    ('[jobs]\nenabled = "yes"\n', "jobs.enabled: must be true or false"),
]


@pytest.mark.parametrize(("toml", "message"), BAD_TOML)
def test_bad_toml_values_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, toml), env={})
    assert message in str(e.value)


BAD_ENV = [
    (
        {"HSMCA_GRPC_WORKERS": "x"},
        "grpc.workers (from HSMCA_GRPC_WORKERS): must be a non-negative integer, got 'x'",
    ),
    ({"HSMCA_GRPC_WORKERS": "1.5"}, "grpc.workers (from HSMCA_GRPC_WORKERS): must be"),
    ({"HSMCA_GRPC_GRACE_SECONDS": "soon"}, "grpc.grace_seconds (from HSMCA_GRPC_GRACE_SECONDS)"),
    ({"HSMCA_GRPC_GRACE_SECONDS": "nan"}, "grpc.grace_seconds (from HSMCA_GRPC_GRACE_SECONDS)"),
    ({"HSMCA_POLICY_MIN_RSA_BITS": ""}, "policy.min_rsa_bits (from HSMCA_POLICY_MIN_RSA_BITS)"),
    ({"HSMCA_HSM_PIN_SOURCE": "secret"}, "hsm.pin_source (from HSMCA_HSM_PIN_SOURCE): must be"),
    ({"HSMCA_GRPC_WORKER": "2"}, "HSMCA_GRPC_WORKER: unknown setting for section [grpc]"),
    ({"HSMCA_CONFIG": "/nonexistent/hsmca.toml"}, "does not exist"),
    ({"HSMCA_DATABASE_URL": "postgresql://u:pw@h:notaport/db"}, "database.url"),
    ({"HSMCA_JOBS_ENABLED": "maybe"}, "jobs.enabled (from HSMCA_JOBS_ENABLED): must be true"),
]


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("TRUE", True)])
def test_jobs_enabled_from_env(value: str, expected: bool) -> None:
    assert load_config(env={"HSMCA_JOBS_ENABLED": value}).jobs.enabled is expected


@pytest.mark.parametrize(("env", "message"), BAD_ENV)
def test_bad_env_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(env=env)
    assert message in str(e.value)
    assert "pw" not in str(e.value)


def test_token_configs_read_the_pin_only_on_demand(tmp_path: Path) -> None:
    module = tmp_path / "libfake.so"
    module.write_bytes(b"")
    (tmp_path / "softhsm").mkdir()
    (tmp_path / "softhsm" / "user.pin").write_text("987654\n")
    env = {
        "HSMCA_STATE_DIR": str(tmp_path),
        "HSMCA_HSM_MODULE": str(module),
        "HSMCA_SOFTWARE_MODULE": str(module),
    }
    cfg = load_config(env=env)
    assert "987654" not in repr(cfg)
    tokens = cfg.token_configs()
    assert tokens[TokenRole.HSM].pin == "987654"
    assert tokens[TokenRole.HSM].token_label == "hsmca-hsm"
    assert tokens[TokenRole.SOFTWARE].token_label == "hsmca-software"
    assert all("987654" not in repr(t) for t in tokens.values())
    # The PIN file changes take effect at the next read; the Config never held it.
    (tmp_path / "softhsm" / "user.pin").write_text("111111\n")
    assert cfg.token_config(TokenRole.SOFTWARE).pin == "111111"


def test_softhsm2_conf_is_exported_only_when_unset_and_present(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    environ: dict[str, str] = {}
    assert export_softhsm2_conf(cfg, environ) is None and environ == {}  # no file yet
    conf = tmp_path / "softhsm" / "softhsm2.conf"
    conf.parent.mkdir()
    conf.write_text("directories.tokendir = x\n")
    assert export_softhsm2_conf(cfg, environ) == str(conf)
    assert environ == {"SOFTHSM2_CONF": str(conf)}
    preset = {"SOFTHSM2_CONF": "/elsewhere.conf"}
    assert export_softhsm2_conf(cfg, preset) == "/elsewhere.conf"
    assert preset == {"SOFTHSM2_CONF": "/elsewhere.conf"}


def test_two_different_softhsm_confs_are_refused(tmp_path: Path) -> None:
    for name in ("a.conf", "b.conf"):
        (tmp_path / name).write_text("")
    cfg = load_config(
        env={
            "HSMCA_STATE_DIR": str(tmp_path),
            "HSMCA_HSM_SOFTHSM2_CONF": "a.conf",
            "HSMCA_SOFTWARE_SOFTHSM2_CONF": "b.conf",
        }
    )
    with pytest.raises(ConfigError, match="software.softhsm2_conf: differs"):
        export_softhsm2_conf(cfg, {})


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    with pytest.raises(AttributeError):
        cfg.grpc.workers = 3  # type: ignore[misc]


def test_tls_and_auth_defaults_live_under_the_state_dir(tmp_path: Path) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path)})
    tls = tmp_path / "tls"
    assert (cfg.tls.dir, cfg.tls.server_cert, cfg.tls.server_key, cfg.tls.client_ca) == (
        tls, tls / "server.pem", tls / "server.key", tls / "ca.pem")
    assert cfg.tls.managed and cfg.tls.server_names == ()
    assert cfg.auth.policy_file == tmp_path / "policy.toml"
    assert cfg.grpc.insecure is False
    names = load_config(env={"HSMCA_STATE_DIR": str(tmp_path),
                             "HSMCA_TLS_SERVER_NAMES": "ca.example, 10.0.0.5"})
    assert names.tls.server_names == ("ca.example", "10.0.0.5")


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051",
                                    "ca.example:50051"])
def test_plaintext_off_loopback_is_refused(tmp_path: Path, listen: str) -> None:
    with pytest.raises(ConfigError, match="only on a loopback address"):
        load_config(env={"HSMCA_STATE_DIR": str(tmp_path), "HSMCA_GRPC_INSECURE": "true",
                         "HSMCA_GRPC_LISTEN": listen})


@pytest.mark.parametrize("listen", ["127.0.0.1:1", "127.0.0.2:1", "[::1]:1", "localhost:1"])
def test_plaintext_on_loopback_is_allowed(tmp_path: Path, listen: str) -> None:
    cfg = load_config(env={"HSMCA_STATE_DIR": str(tmp_path), "HSMCA_GRPC_INSECURE": "true",
                           "HSMCA_GRPC_LISTEN": listen})
    assert cfg.grpc.insecure
