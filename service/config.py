"""Service configuration: one TOML file plus ``HSMCA_*`` environment overrides.

Precedence, lowest first: embedded defaults, the TOML file, the environment. Everything is
validated on load; a bad value raises :class:`ConfigError` naming the key and the problem.

- The file is ``load_config(path)``, else ``$HSMCA_CONFIG``, else none (defaults only).
- ``state_dir`` (top-level TOML key or ``$HSMCA_STATE_DIR``, default ``var``, relative to the
  current directory) anchors every relative path: PIN files, ``softhsm2_conf`` and SQLite
  database files. It is made absolute on load, so worker processes agree on it.
- Every key ``[section] key`` may be overridden by ``HSMCA_<SECTION>_<KEY>`` in upper case,
  e.g. ``HSMCA_GRPC_WORKERS=4``, ``HSMCA_DATABASE_URL``, ``HSMCA_HSM_PIN_SOURCE``.
  Unknown TOML sections/keys and unknown ``HSMCA_<SECTION>_*`` variables of a known section
  are errors, so a typo never silently falls back to a default.

The PIN itself is never part of :class:`Config`: only its source (``env:NAME`` or
``file:PATH``) is. :meth:`Config.token_config` reads the PIN when the token is opened.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hsm.config import TokenConfig, TokenRole, read_pin

ENV_PREFIX = "HSMCA_"
ENV_CONFIG = "HSMCA_CONFIG"
ENV_STATE_DIR = "HSMCA_STATE_DIR"
DEFAULT_STATE_DIR = "var"
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True)
class TokenSettings:
    """Where one token role's keys live: PKCS#11 module, token label and PIN source.

    ``softhsm2_conf`` only matters for SoftHSM, which finds its token directory through the
    ``SOFTHSM2_CONF`` environment variable; a real HSM's module ignores it.
    """

    module: str
    token_label: str
    pin_source: str
    softhsm2_conf: Path | None

    def token_config(self, role: TokenRole) -> TokenConfig:
        """Build the hsm-layer TokenConfig, reading the PIN from its source only now."""
        return TokenConfig(
            role=role,
            module=self.module,
            token_label=self.token_label,
            pin=read_pin(self.pin_source),
        )


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    """Database URL (SQLAlchemy form); SQLite files are anchored at the state directory."""

    url: str

    def __repr__(self) -> str:
        # A PostgreSQL URL may carry a password; repr (and so logs) must not show it.
        shown = make_url(self.url).render_as_string(hide_password=True)
        return f"DatabaseConfig(url={shown!r})"


@dataclasses.dataclass(frozen=True)
class GrpcConfig:
    """gRPC server: listen address, worker processes (0 = cores), threads, drain time, pinning."""

    listen: str
    workers: int
    max_threads: int
    grace_seconds: float
    pin_workers: bool
    insecure: bool = False
    #: Seconds between two probes of the tokens and the database by the health check.
    health_interval_seconds: float = 1.0

    def worker_count(self) -> int:
        """Number of worker processes to start (``workers``, or the core count if 0)."""
        return self.workers or (os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """gRPC transport security: where the server certificate, its key and the client trust
    anchors are, the names the bootstrap puts in the server certificate, and renewal.

    The defaults are the files ``hsmca serve`` bootstraps under ``<state_dir>/tls``; an
    operator may point ``server_cert``/``server_key``/``client_ca`` at their own files
    (for example a mesh's SPIFFE bundle), and the bootstrap then leaves them alone.
    """

    dir: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    crl: Path
    server_names: tuple[str, ...]
    server_validity_days: int
    renew_before_days: int

    @property
    def managed(self) -> bool:
        """True when the server certificate is the one the operations CA issues and renews."""
        return (self.server_cert == self.dir / "server.pem"
                and self.server_key == self.dir / "server.key")


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    """Authorization: the policy file mapping principals to tenants, roles and limits."""

    policy_file: Path


@dataclasses.dataclass(frozen=True)
class HttpConfig:
    """HTTP server for CRLs; ``public_base_url`` is the CRL distribution point base."""

    listen: str
    public_base_url: str


@dataclasses.dataclass(frozen=True)
class KmsConfig:
    """Region and account that appear in KMS ARNs (acs:kms:<region>:<account>:...)."""

    region: str
    account_id: str


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Issuance policy knobs: smallest RSA key accepted in CSRs, the default tenant."""

    min_rsa_bits: int
    default_owner: str


@dataclasses.dataclass(frozen=True)
class JobsConfig:
    """The asynchronous issuance worker thread of each worker process."""

    enabled: bool
    poll_seconds: float
    #: How long a claimed job is held by its worker before another may take it over; the
    #: holder renews it while the job runs, so it only bounds the wait after a crash.
    lease_seconds: float = 30.0


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """The audit log: how often each worker signs a checkpoint over the chain heads."""

    checkpoint_seconds: float = 60.0


@dataclasses.dataclass(frozen=True)
class LimitsConfig:
    """Bounds on requests and connections (README "Bounds"); see service/limits.py."""

    max_sans: int = 100
    max_tags: int = 20
    max_chain_certificates: int = 10
    http_read_timeout_seconds: float = 10.0
    http_idle_timeout_seconds: float = 30.0
    http_max_connections: int = 64


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole validated configuration (no secrets: PINs are read on demand)."""

    state_dir: Path
    source: Path | None
    hsm: TokenSettings
    software: TokenSettings
    database: DatabaseConfig
    grpc: GrpcConfig
    http: HttpConfig
    kms: KmsConfig
    policy: PolicyConfig
    jobs: JobsConfig
    tls: TlsConfig
    auth: AuthConfig
    audit: AuditConfig = AuditConfig()
    limits: LimitsConfig = LimitsConfig()

    def token_config(self, role: TokenRole) -> TokenConfig:
        """The hsm-layer TokenConfig of one role; reads that role's PIN now."""
        settings = self.hsm if role is TokenRole.HSM else self.software
        return settings.token_config(role)

    def token_configs(self) -> dict[TokenRole, TokenConfig]:
        """Both token roles' TokenConfigs; reads the PINs now."""
        return {role: self.token_config(role) for role in TokenRole}


# --- value parsers: each takes the raw value (TOML-typed, or str from the environment) ---

_Parser = Callable[[str, Any, bool], Any]


def _fail(key: str, problem: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: {problem}, got {value!r}")


def _string(key: str, value: Any, from_env: bool) -> str:
    if not isinstance(value, str):
        raise _fail(key, "must be a string", value)
    return value


def _nonempty(key: str, value: Any, from_env: bool) -> str:
    text = _string(key, value, from_env).strip()
    if not text:
        raise _fail(key, "must not be empty", value)
    return text


def _int(key: str, value: Any, from_env: bool, *, minimum: int, what: str) -> int:
    # bool is an int subclass in Python; `workers = true` is a typo, not 1.
    if from_env and isinstance(value, str):
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise _fail(key, f"must be {what}", value) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _fail(key, f"must be {what}", value)
    if number < minimum:
        raise _fail(key, f"must be {what}", value)
    return number


def _non_negative_int(key: str, value: Any, from_env: bool) -> int:
    return _int(key, value, from_env, minimum=0, what="a non-negative integer")


def _positive_int(key: str, value: Any, from_env: bool) -> int:
    return _int(key, value, from_env, minimum=1, what="a positive integer")


def _rsa_bits(key: str, value: Any, from_env: bool) -> int:
    bits = _int(key, value, from_env, minimum=1024, what="an integer of at least 1024")
    if bits > 16384:
        raise _fail(key, "must be at most 16384", value)
    return bits


def _bool(key: str, value: Any, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise _fail(key, "must be true or false", value)


def _seconds(key: str, value: Any, from_env: bool) -> float:
    number: float
    if from_env and isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(key, "must be a non-negative number of seconds", value) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise _fail(key, "must be a non-negative number of seconds", value)
    if not number >= 0 or number == float("inf"):  # also rejects NaN
        raise _fail(key, "must be a non-negative number of seconds", value)
    return number


def _positive_seconds(key: str, value: Any, from_env: bool) -> float:
    number = _seconds(key, value, from_env)
    if number == 0:
        raise _fail(key, "must be a positive number of seconds", value)
    return number


def _listen(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise _fail(key, "must be HOST:PORT with PORT in 0..65535 (IPv6 as [::1]:PORT)", value)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise _fail(key, "an IPv6 host must be in brackets, e.g. [::1]:50051", value)
    return text


def _base_url(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(key, "must be an absolute http:// or https:// URL", value)
    if parts.query or parts.fragment:
        raise _fail(key, "must not have a query or fragment", value)
    # Certificates carry <base>/crl/<id>.crl; normalise so that join never doubles a slash.
    return text.rstrip("/")


_REGION = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _region(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    if not _REGION.fullmatch(text):
        raise _fail(key, "must be lower-case letters, digits and dashes (e.g. cn-hangzhou)", value)
    return text


def _account_id(key: str, value: Any, from_env: bool) -> str:
    # A string, not a TOML integer: account ids may have leading zeros.
    text = _nonempty(key, value, from_env)
    if not text.isdigit() or not text.isascii():
        raise _fail(key, "must be a string of digits", value)
    return text


def _owner(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    if not _OWNER.fullmatch(text):
        raise _fail(key, "must be 1-64 letters, digits, '.', '_' or '-'", value)
    return text


def _token_label(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    # CK_TOKEN_INFO.label is 32 bytes, blank padded (PKCS#11 v2.40 3.2).
    if len(text.encode("utf-8")) > 32:
        raise _fail(key, "must be at most 32 bytes (PKCS#11 token label)", value)
    return text


def _pin_source(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    kind, _, where = text.partition(":")
    if kind not in ("env", "file") or not where:
        raise _fail(key, "must be 'env:NAME' or 'file:PATH'", value)
    return text


def _lease_seconds(key: str, value: Any, from_env: bool) -> float:
    seconds = _seconds(key, value, from_env)
    if seconds < 1:
        raise _fail(key, "must be at least 1 second", value)
    return seconds


def _optional_path(key: str, value: Any, from_env: bool) -> str:
    return _string(key, value, from_env).strip()


def _names(key: str, value: Any, from_env: bool) -> tuple[str, ...]:
    # A TOML array of strings, or a comma-separated list in the environment.
    if from_env and isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise _fail(key, "must be a list of strings", value)
    for item in items:
        if not isinstance(item, str) or not item.strip() or any(c.isspace() for c in item):
            raise _fail(key, "must be a list of non-empty names without spaces", value)
    return tuple(items)


def _database_url(key: str, value: Any, from_env: bool) -> str:
    text = _nonempty(key, value, from_env)
    try:
        make_url(text)
    except (ArgumentError, ValueError):
        # The URL may hold a password: do not echo it back.
        raise ConfigError(f"{key}: not a valid database URL (dialect+driver://...)") from None
    return text


_SCHEMA: dict[str, dict[str, _Parser]] = {
    "hsm": {
        "module": _nonempty,
        "token_label": _token_label,
        "pin_source": _pin_source,
        "softhsm2_conf": _optional_path,
    },
    "database": {"url": _database_url},
    "grpc": {
        "listen": _listen,
        "workers": _non_negative_int,
        "max_threads": _positive_int,
        "grace_seconds": _seconds,
        "pin_workers": _bool,
        "insecure": _bool,
        "health_interval_seconds": _seconds,
    },
    "tls": {
        "dir": _nonempty,
        "server_cert": _optional_path,
        "server_key": _optional_path,
        "client_ca": _optional_path,
        "crl": _optional_path,
        "server_names": _names,
        "server_validity_days": _positive_int,
        "renew_before_days": _positive_int,
    },
    "auth": {"policy_file": _nonempty},
    "http": {"listen": _listen, "public_base_url": _base_url},
    "kms": {"region": _region, "account_id": _account_id},
    "policy": {"min_rsa_bits": _rsa_bits, "default_owner": _owner},
    "jobs": {"enabled": _bool, "poll_seconds": _seconds, "lease_seconds": _lease_seconds},
    "audit": {"checkpoint_seconds": _positive_seconds},
    "limits": {
        "max_sans": _positive_int,
        "max_tags": _positive_int,
        "max_chain_certificates": _positive_int,
        "http_read_timeout_seconds": _positive_seconds,
        "http_idle_timeout_seconds": _positive_seconds,
        "http_max_connections": _positive_int,
    },
}
_SCHEMA["software"] = dict(_SCHEMA["hsm"])

# Paths here are relative to state_dir; the SQLite default is filled in from state_dir.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "hsm": {
        "module": DEFAULT_MODULE,
        "token_label": "hsmca-hsm",
        "pin_source": "file:softhsm/user.pin",
        "softhsm2_conf": "softhsm/softhsm2.conf",
    },
    "software": {
        "module": DEFAULT_MODULE,
        "token_label": "hsmca-software",
        "pin_source": "file:softhsm/user.pin",
        "softhsm2_conf": "softhsm/softhsm2.conf",
    },
    "database": {"url": "sqlite:///hsmca.db"},
    "grpc": {
        "listen": "127.0.0.1:50051",
        "workers": 0,
        "max_threads": 16,
        "grace_seconds": 10,
        "pin_workers": True,
        "insecure": False,
        "health_interval_seconds": 1.0,
    },
    "tls": {
        "dir": "tls",
        "server_cert": "",
        "server_key": "",
        "client_ca": "",
        "crl": "",
        "server_names": [],
        "server_validity_days": 30,
        "renew_before_days": 10,
    },
    "auth": {"policy_file": "policy.toml"},
    "http": {"listen": "127.0.0.1:8080", "public_base_url": "http://127.0.0.1:8080"},
    "kms": {"region": "cn-local", "account_id": "000000000000"},
    "policy": {"min_rsa_bits": 2048, "default_owner": "default"},
    "jobs": {"enabled": True, "poll_seconds": 0.5, "lease_seconds": 30.0},
    "audit": {"checkpoint_seconds": 60},
    "limits": {
        "max_sans": 100,
        "max_tags": 20,
        "max_chain_certificates": 10,
        "http_read_timeout_seconds": 10,
        "http_idle_timeout_seconds": 30,
        "http_max_connections": 64,
    },
}

_TOP_LEVEL_KEYS = frozenset({"state_dir"})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r}: does not exist") from None
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r}: invalid TOML: {e}") from None


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def _check_env_names(env: Mapping[str, str]) -> None:
    known = {_env_name(s, k) for s, keys in _SCHEMA.items() for k in keys}
    for name in env:
        if name in known or not name.startswith(ENV_PREFIX):
            continue
        for section in _SCHEMA:
            if name.startswith(_env_name(section, "")):
                raise ConfigError(
                    f"{name}: unknown setting for section [{section}] "
                    f"(known: {', '.join(sorted(_SCHEMA[section]))})"
                )


def _anchor(path: str, state_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else state_dir / p


def _anchor_pin_source(source: str, state_dir: Path) -> str:
    kind, _, where = source.partition(":")
    if kind == "file":
        return f"file:{_anchor(where, state_dir)}"
    return source


def _anchor_database_url(url: str, state_dir: Path) -> str:
    parsed = make_url(url)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:":
        return url
    if db.startswith("file:"):
        return url  # SQLite URI filename: the caller meant it literally.
    return parsed.set(database=str(_anchor(db, state_dir))).render_as_string(hide_password=False)


def _token_settings(values: Mapping[str, Any], state_dir: Path) -> TokenSettings:
    conf = values["softhsm2_conf"]
    return TokenSettings(
        module=values["module"],
        token_label=values["token_label"],
        pin_source=_anchor_pin_source(values["pin_source"], state_dir),
        softhsm2_conf=_anchor(conf, state_dir) if conf else None,
    )


def _tls_config(values: Mapping[str, Any], state_dir: Path) -> TlsConfig:
    tls_dir = _anchor(values["dir"], state_dir)

    def file(key: str, default: str) -> Path:
        given = values[key]
        return _anchor(given, state_dir) if given else tls_dir / default

    return TlsConfig(
        dir=tls_dir,
        server_cert=file("server_cert", "server.pem"),
        server_key=file("server_key", "server.key"),
        client_ca=file("client_ca", "ca.pem"),
        crl=file("crl", "ca.crl"),
        server_names=values["server_names"],
        server_validity_days=values["server_validity_days"],
        renew_before_days=values["renew_before_days"],
    )


def is_loopback_listen(listen: str) -> bool:
    """True when a HOST:PORT listen address only accepts connections from this machine."""
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load, override from the environment and validate the configuration.

    With ``env`` None the process environment is used, and ``SOFTHSM2_CONF`` is exported
    from the ``softhsm2_conf`` setting when the file exists and the variable is unset
    (see :func:`export_softhsm2_conf`). An explicit ``env`` mapping makes no side effects.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    _check_env_names(environ)

    config_path = path if path is not None else environ.get(ENV_CONFIG)
    document: dict[str, Any] = {}
    source: Path | None = None
    if config_path:
        source = Path(config_path).expanduser().resolve()
        document = _read_toml(source)

    for name, value in document.items():
        if name in _TOP_LEVEL_KEYS:
            continue
        if name not in _SCHEMA:
            raise ConfigError(
                f"{name}: unknown section (known: {', '.join(sorted(_SCHEMA))}, state_dir)"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: must be a [{name}] table")
        for key in value:
            if key not in _SCHEMA[name]:
                raise ConfigError(
                    f"{name}.{key}: unknown key (known: {', '.join(sorted(_SCHEMA[name]))})"
                )

    state_raw: Any = environ.get(ENV_STATE_DIR) or document.get("state_dir", DEFAULT_STATE_DIR)
    state_key = "HSMCA_STATE_DIR" if environ.get(ENV_STATE_DIR) else "state_dir"
    state_dir = Path(_nonempty(state_key, state_raw, True)).expanduser().resolve()

    values: dict[str, dict[str, Any]] = {}
    for section, parsers in _SCHEMA.items():
        table = document.get(section, {})
        values[section] = {}
        for key, parse in parsers.items():
            env_name = _env_name(section, key)
            if env_name in environ:
                value = parse(f"{section}.{key} (from {env_name})", environ[env_name], True)
            elif key in table:
                value = parse(f"{section}.{key}", table[key], False)
            else:
                value = parse(f"{section}.{key}", _DEFAULTS[section][key], False)
            values[section][key] = value

    config = Config(
        state_dir=state_dir,
        source=source,
        hsm=_token_settings(values["hsm"], state_dir),
        software=_token_settings(values["software"], state_dir),
        database=DatabaseConfig(url=_anchor_database_url(values["database"]["url"], state_dir)),
        grpc=GrpcConfig(**values["grpc"]),
        http=HttpConfig(**values["http"]),
        kms=KmsConfig(**values["kms"]),
        policy=PolicyConfig(**values["policy"]),
        jobs=JobsConfig(**values["jobs"]),
        tls=_tls_config(values["tls"], state_dir),
        auth=AuthConfig(policy_file=_anchor(values["auth"]["policy_file"], state_dir)),
        audit=AuditConfig(**values["audit"]),
        limits=LimitsConfig(**values["limits"]),
    )
    if config.grpc.insecure and not is_loopback_listen(config.grpc.listen):
        raise ConfigError(
            f"grpc.insecure: plaintext gRPC is allowed only on a loopback address, but "
            f"grpc.listen is {config.grpc.listen!r}; serve over mTLS (the default) or "
            "listen on 127.0.0.1, [::1] or localhost"
        )
    if config.tls.renew_before_days >= config.tls.server_validity_days:
        raise ConfigError(
            "tls.renew_before_days: must be smaller than tls.server_validity_days, got "
            f"{config.tls.renew_before_days} >= {config.tls.server_validity_days}"
        )
    if env is None:
        export_softhsm2_conf(config, os.environ)
    return config


def export_softhsm2_conf(config: Config, environ: MutableMapping[str, str]) -> str | None:
    """Set ``SOFTHSM2_CONF`` from the config if unset and the file exists; return its value.

    Only SoftHSM reads this variable. One process loads one SoftHSM configuration, so the
    two roles must not name different existing files.
    """
    existing = {
        str(t.softhsm2_conf)
        for t in (config.hsm, config.software)
        if t.softhsm2_conf is not None and t.softhsm2_conf.is_file()
    }
    if len(existing) > 1:
        raise ConfigError(
            "software.softhsm2_conf: differs from hsm.softhsm2_conf, but one process "
            f"reads one SOFTHSM2_CONF, got {sorted(existing)!r}"
        )
    if "SOFTHSM2_CONF" in environ:
        return environ["SOFTHSM2_CONF"]
    if existing:
        (conf,) = existing
        environ["SOFTHSM2_CONF"] = conf
        return conf
    return None
