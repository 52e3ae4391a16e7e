"""Money and ratios: integer fen, basis points, and the ONE rounding helper.

Every amount in ``libs.policy`` is an ``int`` of fen (0.01 yuan); every ratio is an ``int`` of
basis points (1% = 100 bps, 100% = 10_000 bps). Floats never appear.

Rounding rule (the only one in the engine, see README.md "Rounding"): a value that is not a
whole number of fen is first expressed as an exact integer fraction ``numerator / denominator``
and then rounded **half-up, symmetric about zero** (half away from zero) by :func:`round_half_up`.
Symmetry makes a refund line (negative quantity) the exact mirror of the line it refunds.
Each fund payment is rounded once, from its exact rational value; the person's part is the
residual, so the identities of POLICY.md §3 hold exactly.
"""

from __future__ import annotations

INT64_MAX = (1 << 63) - 1
BPS_ONE = 10_000  # 100% in basis points
MILLI = 1_000  # quantities are in thousandths


def round_half_up(numerator: int, denominator: int) -> int:
    """Round ``numerator / denominator`` to the nearest int, halves away from zero.

    ``denominator`` must be positive. Exact for any size of int.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


def yuan(fen: int) -> str:
    """Format fen as a yuan string for traces (``123456`` -> ``"1234.56"``)."""
    if fen >= 0:
        return f"{fen // 100}.{fen % 100:02d}"
    return f"-{-fen // 100}.{-fen % 100:02d}"


def pct(bps: int) -> str:
    """Format basis points as a percent string (``8500`` -> ``"85%"``, ``8550`` -> ``"85.5%"``)."""
    whole, part = divmod(bps, 100)
    if part == 0:
        return f"{whole}%"
    return f"{whole}.{part:02d}".rstrip("0") + "%"
