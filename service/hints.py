"""Hints for misspelled enumerated values ("unknown algorithm 'EC_P256'; the Private CA uses
ECC_256").

The two APIs spell the same key types differently (KMS ``EC_P256``, Private CA ``ECC_256``),
so the commonest mistake is the other API's name; the next is case or punctuation
(``ecc-256``), then a typo. The hint names the value meant, or nothing when no value is
close: the error message still lists every valid value.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = ["KMS_KEY_SPEC_FOR_PCA", "PCA_ALGORITHM_FOR_KMS", "spelling_hint"]

#: The Private CA's Algorithm for each KMS KeySpec spelling.
PCA_ALGORITHM_FOR_KMS: Mapping[str, str] = MappingProxyType({
    "EC_P256": "ECC_256",
    "EC_P384": "ECC_384",
    "EC_P521": "ECC_512",
    "EC_SM2": "SM2_256",
})
#: The KMS KeySpec for each Private CA Algorithm spelling.
KMS_KEY_SPEC_FOR_PCA: Mapping[str, str] = MappingProxyType({
    pca: kms for kms, pca in PCA_ALGORITHM_FOR_KMS.items()
})


def _normalised(value: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", value.upper())


def spelling_hint(
    value: str,
    valid: Iterable[str],
    *,
    other_api: Mapping[str, str] | None = None,
    this_api: str = "",
) -> str:
    """A "; the Private CA uses X" / "; did you mean X?" suffix for ``value``, or "".

    ``other_api`` maps the other API's spellings to this one's; ``this_api`` names this API
    in the hint ("the Private CA", "KMS").
    """
    # str-valued enums count by their value, as the API spells them.
    choices = [str(c.value) if isinstance(c, enum.Enum) else c for c in valid]
    if other_api and value in other_api and other_api[value] in choices:
        who = this_api or "this API"
        return f"; {who} uses {other_api[value]}"
    by_shape = {_normalised(c): c for c in choices}
    if other_api:
        for theirs, ours in other_api.items():
            if ours in choices:
                by_shape.setdefault(_normalised(theirs), ours)
    same_shape = by_shape.get(_normalised(value))
    if same_shape is not None and same_shape != value:
        return f"; did you mean {same_shape}?"
    close = difflib.get_close_matches(value.upper(), choices, n=1, cutoff=0.75)
    if close:
        return f"; did you mean {close[0]}?"
    return ""
