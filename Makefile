# hsmca — the two set-up commands are `make serve` and `make test`; both install what is
# missing on a fresh Debian machine (softhsm2, openssl, opencryptoki, postgresql via apt-get;
# Python packages into .venv). opencryptoki is the second PKCS#11 implementation the tests run
# on; the tests start a private PostgreSQL cluster of their own (never the system one).

# The interpreter .venv is made with: Debian's python3 when it is CPython 3.11 or newer with
# venv support, else python3 on PATH. Debian's build (libpython linked into the executable)
# ran a pure-Python loop in 0.63x the time of a pyenv build without --enable-optimizations
# and cost the service's workers 2-5% less CPU per certificate (docs/benchmarks.md). An
# existing .venv keeps its interpreter; PYTHON=... chooses another for a new one.
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11) or sys.implementation.name != "cpython")' >/dev/null 2>&1 && echo $(SYSTEM_PYTHON) || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STATE  ?= var
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq

.PHONY: all deps system-deps bench-deps token serve migrate test fuzz bench bench-crl proto lint conformance clean

all: test

system-deps:
	@missing=""; \
	command -v softhsm2-util >/dev/null 2>&1 || missing="$$missing softhsm2"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	[ -x /usr/sbin/pkcsslotd ] || missing="$$missing opencryptoki"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_INSTALL) $$missing >/dev/null; \
	fi

# h2load (nghttp2-client) is the benchmark's load generator and cfssl (golang-cfssl) the peer
# it is compared with; only `make bench` needs them.
bench-deps:
	@missing=""; \
	command -v h2load >/dev/null 2>&1 || missing="$$missing nghttp2-client"; \
	command -v cfssl >/dev/null 2>&1 || missing="$$missing golang-cfssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_INSTALL) $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

deps: system-deps $(STAMP)

token: deps
	softhsm/init-tokens.sh $(STATE)/softhsm

migrate: token
	SOFTHSM2_CONF=$(CURDIR)/$(STATE)/softhsm/softhsm2.conf $(BIN)/hsmca migrate

# The first run also bootstraps mTLS under $(STATE)/tls (operations CA key in the HSM token,
# server and admin certificates) and $(STATE)/policy.toml; later runs reuse them.
serve: token
	HSMCA_STATE_DIR=$(abspath $(STATE)) SOFTHSM2_CONF=$(abspath $(STATE))/softhsm/softhsm2.conf \
	  $(BIN)/hsmca serve

# The key-export conformance check, first on the configured HSM token (SoftHSM under var/),
# then on opencryptoki's software token (pkcsslotd is system-wide, hence root or sudo; the
# helper starts it, and stops it and restores its configuration afterwards). Markdown
# reports: $(STATE)/conformance-softhsm.md and $(STATE)/conformance-opencryptoki.md.
conformance: token
	HSMCA_STATE_DIR=$(STATE) $(BIN)/hsmca conformance --report $(STATE)/conformance-softhsm.md
	$(SUDO) $(BIN)/python opencryptoki/slotd.py run -- sh -c '$(BIN)/hsmca conformance \
	  --module "$$HSMCA_OCK_MODULE" --token-label "$$HSMCA_OCK_LABEL" \
	  --pin-source env:HSMCA_OCK_PIN --report $(STATE)/conformance-opencryptoki.md'

test: deps
	$(BIN)/python -m pytest -q

# The property-based tests with a large example budget (make test runs them with a small one).
FUZZ_TESTS := tests/hostile/test_fuzz_parsers.py tests/private_ca/test_pca_fuzz.py \
	tests/kms/test_kms_fuzz.py
fuzz: deps
	HSMCA_HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q $(FUZZ_TESTS)

bench: deps bench-deps
	$(BIN)/python bench/bench_token.py
	$(BIN)/python bench/bench_issuance.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_drift.py

# CRLs at scale (a few minutes): 100k certificates, 20k revoked; BENCH_ARGS=--postgresql
# runs it on a private PostgreSQL cluster.
bench-crl: deps
	$(BIN)/python bench/bench_crl.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_ocsp.py
	$(BIN)/python bench/bench_mtls.py

proto: deps
	PYTHON=$(BIN)/python proto/generate.sh service/gen
	$(BIN)/python proto/generate_reference.py

lint: deps
	$(BIN)/ruff check hsm service tests bench opencryptoki
	$(BIN)/mypy hsm service

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
