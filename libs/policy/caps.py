"""What remains of every annual limit of a policy for one person's year-to-date accumulators
(the national 5206 query). Pure; the same parameters and accumulators the engine reads, so the
figures are what the next settlement would start from."""

from __future__ import annotations

from typing import NamedTuple

from libs.policy.model import Accumulators, DeductibleMode, PersonType, Policy, Pool


class CapLeft(NamedTuple):
    """One limit: ``limit_fen`` None = no limit (then ``remaining_fen`` is None too)."""

    cap: str
    limit_fen: int | None
    used_fen: int
    remaining_fen: int | None


def _left(cap: str, limit: int | None, used: int) -> CapLeft:
    return CapLeft(cap, limit, used, None if limit is None else max(limit - used, 0))


def remaining_caps(
    policy: Policy,
    acc: Accumulators,
    *,
    person_type: PersonType,
    hospital_level: int,
    assistance_category: str | None = None,
    hardship: bool = False,
) -> tuple[CapLeft, ...]:
    """Every annual limit of ``policy`` against ``acc``, in a fixed order:

    * ``inpatient_pool`` / ``outpatient_pool``: the pooled fund's annual cap against what it paid;
    * ``large_amount`` / ``critical_illness``: the supplementary fund's cap (the hardship cap
      when ``hardship``) against what it paid; ``supplementary_threshold``: the burden still to
      bear before it pays;
    * ``assistance`` / ``assistance_deductible``: the assistance category's cap and its annual
      deductible on the assistance base (only with a category the policy knows);
    * ``deductible:<service type>``: each annual deductible (by person type and hospital level)
      against what the service's pool has borne. Per-admission deductibles are not annual and are
      not listed.
    """
    out: list[CapLeft] = []
    paid = {Pool.INPATIENT: acc.pooled_paid_fen, Pool.OUTPATIENT: acc.outpatient_pooled_paid_fen}
    borne = {Pool.INPATIENT: acc.inpatient_deductible_borne_fen, Pool.OUTPATIENT: acc.outpatient_deductible_borne_fen}
    for pool in (Pool.INPATIENT, Pool.OUTPATIENT):
        if pool in policy.pool_caps_fen:
            out.append(_left(f"{pool.value}_pool", policy.pool_caps_fen[pool], paid[pool]))
    supp = policy.supplementary
    if supp is not None:
        cap = supp.hardship_annual_cap_fen if hardship else supp.annual_cap_fen
        threshold = supp.hardship_threshold_fen if hardship else supp.threshold_fen
        out.append(_left(supp.fund.value, cap, acc.ci_paid_fen))
        out.append(_left("supplementary_threshold", threshold, acc.ci_burden_fen))
    if assistance_category is not None and assistance_category in policy.assistance:
        rule = policy.assistance[assistance_category]
        out.append(_left("assistance", rule.annual_cap_fen, acc.assistance_paid_fen))
        out.append(_left("assistance_deductible", rule.deductible_fen, acc.assistance_base_fen))
    for service, benefit in policy.benefits.items():
        ded = benefit.deductible
        if ded.mode is DeductibleMode.ANNUAL and person_type in ded.first_fen:
            amount = ded.first_fen[person_type][hospital_level]
            out.append(_left(f"deductible:{service.value}", amount, borne[benefit.pool]))
    return tuple(out)
