"""Keys the services make in a token for a request, each with its audit record.

Used by KMS CreateCertificate and by the Private CA (CA keys, system-generated subscriber
keys); the actions recorded are listed in docs/operations.md, "What is recorded".

- :func:`generate_key` makes a key pair inside the audit record of its generation. If that
  record cannot be committed (the database away), the key is destroyed again before the
  error is raised: a request that failed leaves no key behind, and no key exists without
  the record of its making.
- :func:`destroy_after_failure` destroys the key of a request that failed, with its record.
  It never raises: the request's own error is what the caller gets. A key the token cannot
  destroy now (the token away) is logged with its CKA_ID for the operator.
- :func:`destroy_leftovers` destroys the keys an earlier attempt of the same job left
  labelled with the job's identifier (its process died after making the key, before the
  reservation that would have named it), so that the retry can make its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from hsm.keys import (
    GeneratedKey,
    KeySpec,
    KeyUsage,
    destroy_key,
    generate_key_pair,
    key_ids_labelled,
)
from hsm.token import Token
from service import audit
from service.audit import KeyRef

__all__ = ["destroy_after_failure", "destroy_leftovers", "generate_key"]

_log = logging.getLogger("hsmca.token_keys")


def generate_key(token: Token, spec: KeySpec, *, key_id: bytes, label: str, exportable: bool,
                 usage: KeyUsage = KeyUsage.SIGN, action: str, destroy_action: str,
                 resources: Iterable[str] = (), tenant: str | None = None,
                 details: Mapping[str, Any] | None = None) -> GeneratedKey:
    """:func:`hsm.keys.generate_key_pair`, recorded as ``action`` before it is returned.

    If the record cannot be committed, the key is destroyed (recorded as
    ``destroy_action``) and the record's error is raised.
    """
    resources = tuple(resources)
    generated: GeneratedKey | None = None
    try:
        with audit.key_use(action, key=_ref(token, key_id), resources=resources, tenant=tenant,
                           details=details):
            generated = generate_key_pair(token, spec, key_id=key_id, label=label,
                                          exportable=exportable, usage=usage)
    except BaseException:
        if generated is not None:
            destroy_after_failure(token, key_id, action=destroy_action, resources=resources,
                                  tenant=tenant,
                                  cause="the record of its generation could not be written")
        raise
    return generated


def destroy_after_failure(token: Token, key_id: bytes, *, action: str, cause: str,
                          resources: Iterable[str] = (), tenant: str | None = None) -> None:
    """Destroy the key of a failed request, recorded as ``action``; never raises."""
    destroyed = False
    try:
        with audit.key_use(action, key=_ref(token, key_id), resources=resources, tenant=tenant,
                           details={"cause": cause}):
            destroy_key(token, key_id)
            destroyed = True
    except Exception:
        if destroyed:
            _log.exception("destroyed key %s in token %s after a failure (%s), but the record "
                           "of its destruction could not be written", key_id.hex(), token.label,
                           cause)
        else:
            _log.exception("could not destroy key %s in token %s after a failure (%s); it "
                           "belongs to no certificate: destroy it once the token is back",
                           key_id.hex(), token.label, cause)


def destroy_leftovers(token: Token, label: str, *, action: str,
                      tenant: str | None = None) -> int:
    """Destroy every key labelled ``label`` (a job's identifier, before its attempt makes its
    key: no row names such a key yet); how many there were."""
    leftovers = key_ids_labelled(token, label)
    for key_id in leftovers:
        _log.warning("key %s in token %s is labelled %s, left by an earlier attempt that "
                     "died before its reservation: destroying it", key_id.hex(), token.label,
                     label)
        destroy_after_failure(token, key_id, action=action, resources=[label], tenant=tenant,
                              cause="left by an earlier attempt of the same job")
    return len(leftovers)


def _ref(token: Token, key_id: bytes) -> KeyRef:
    return KeyRef(token.config.role.value, key_id.hex())
