"""The [limits] section: parsed, validated, and applied by service.limits."""

from __future__ import annotations

import pytest

from service import limits
from service.config import ConfigError, load_config
from service.errors import InvalidArgument
from service.pki.names import parse_domain_list


def test_defaults_and_overrides() -> None:
    config = load_config(env={"HSMCA_STATE_DIR": "/tmp", "HSMCA_LIMITS_MAX_SANS": "5",
                              "HSMCA_LIMITS_HTTP_MAX_CONNECTIONS": "8"})
    assert config.limits.max_sans == 5
    assert config.limits.max_tags == 20
    assert config.limits.max_chain_certificates == 10
    assert config.limits.http_max_connections == 8
    assert config.limits.http_read_timeout_seconds == 10


@pytest.mark.parametrize("env", [{"HSMCA_LIMITS_MAX_SANS": "0"},
                                 {"HSMCA_LIMITS_HTTP_READ_TIMEOUT_SECONDS": "0"},
                                 {"HSMCA_LIMITS_MAX_TAGS": "-1"}])
def test_bad_values_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_config(env={"HSMCA_STATE_DIR": "/tmp", **env})


def test_configured_bound_applies() -> None:
    before = limits.active()
    limits.configure(limits.Limits(max_sans=2))
    try:
        with pytest.raises(InvalidArgument, match="at most 2"):
            parse_domain_list("a.example.test,b.example.test,c.example.test")
    finally:
        limits.configure(before)
    assert len(parse_domain_list("a.example.test,b.example.test,c.example.test")) == 3
