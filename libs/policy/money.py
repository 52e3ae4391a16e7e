"""Money and ratios: integer fen, basis points, and the ONE rounding helper.

Every amount in ``libs.policy`` is an ``int`` of fen (0.01 yuan); every ratio is an ``int`` of
basis points (1% = 100 bps, 100% = 10_000 bps). Floats never appear.

Rounding rule (the only one in the engine, see README.md "Rounding"): a value that is not a
whole number of fen is first expressed as an exact integer fraction ``numerator / denominator``
and then rounded **half-up, symmetric about zero** (half away from zero) by :func:`round_half_up`.
Symmetry makes a refund line (negative quantity) the exact mirror of the line it refunds.
Each fund payment is rounded once, from its exact rational value; the person's part is the
residual, so the identities of POLICY.md §3 hold exactly.

The engine's hot loop writes this rounding inline for the two denominators it divides by
(:data:`MILLI` and :data:`BPS_ONE`, both even) and a numerator it knows is non-negative: there
``round_half_up(n, d) == (2n + d) // 2d == (n + d // 2) // d`` exactly (the same rule, one
floor division; ``test_round_half_up_inline_form`` checks it). A numerator that may be negative
always goes through :func:`round_half_up` itself (the fast split rounds a refund line from the
non-negative quantities left before and after it, never from a negative one).
"""

from __future__ import annotations

INT64_MAX = (1 << 63) - 1
BPS_ONE = 10_000  # 100% in basis points
MILLI = 1_000  # quantities are in thousandths
HALF_MILLI = MILLI // 2  # (n + HALF_MILLI) // MILLI == round_half_up(n, MILLI) for n >= 0
HALF_BPS = BPS_ONE // 2  # (n + HALF_BPS) // BPS_ONE == round_half_up(n, BPS_ONE) for n >= 0


def round_half_up(numerator: int, denominator: int) -> int:
    """Round ``numerator / denominator`` to the nearest int, halves away from zero.

    ``denominator`` must be positive. Exact for any size of int.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -((-2 * numerator + denominator) // (2 * denominator))


_CENTS = tuple(f".{c:02d}" for c in range(100))  # ".00" .. ".99"


def yuan(fen: int) -> str:
    """Format fen as a yuan string for traces (``123456`` -> ``"1234.56"``, ``-5`` -> ``"-0.05"``)."""
    if fen >= 0:
        return str(fen // 100) + _CENTS[fen % 100]
    return "-" + str(-fen // 100) + _CENTS[-fen % 100]


def pct(bps: int) -> str:
    """Format basis points as a percent string (``8500`` -> ``"85%"``, ``8550`` -> ``"85.5%"``)."""
    whole, part = divmod(bps, 100)
    if part == 0:
        return f"{whole}%"
    return f"{whole}.{part:02d}".rstrip("0") + "%"
