"""Token-layer tests: real SoftHSM tokens come from tests/conftest.py."""
