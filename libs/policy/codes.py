"""National-style item codes (the shape of the national medical insurance coding standard).

- Western drug ``X...`` / Chinese patent drug ``Z...``: 23 characters, e.g.
  ``XJ01DCM038A001010100254``: kind letter, ATC-like group (letter, 2 digits, 3 letters),
  3-digit generic serial, dosage-form letter, 12-digit specification/maker serial.
- Medical service item: 15 digits starting ``00``, e.g. ``001102000010000``.
- Medical consumable: ``C`` + 26 digits (27 characters), e.g. ``C14020214600000710000005000``.

The engine only needs the shape (a malformed code is a classified error); meaning lives in the
catalogue.
"""

from __future__ import annotations

import re

from libs.policy.model import ItemKind

DRUG_CODE = re.compile(r"[XZ][A-Z]\d{2}[A-Z]{3}\d{3}[A-Z]\d{12}")
SERVICE_CODE = re.compile(r"00\d{13}")
CONSUMABLE_CODE = re.compile(r"C\d{26}")

_BY_KIND = {ItemKind.DRUG: DRUG_CODE, ItemKind.SERVICE: SERVICE_CODE, ItemKind.CONSUMABLE: CONSUMABLE_CODE}


def kind_of_code(code: str) -> ItemKind | None:
    """The item kind a well-formed code denotes, or None when the code is malformed."""
    for kind, pattern in _BY_KIND.items():
        if pattern.fullmatch(code):
            return kind
    return None


def is_well_formed(code: str) -> bool:
    return kind_of_code(code) is not None
