"""The reason catalogue, GENERATED from protos/medsettle/common/v1/reason.proto by
scripts/gen_reasons.py (`make protos`): do not edit; change the proto and regenerate.

Pure (no protobuf). ``Reason`` members are the proto value names without ``REASON_``; their values
are the names ``google.rpc.ErrorInfo.reason`` carries. ``REASON_INFO`` gives each one's number, gRPC
status code (by name) and ErrorInfo metadata keys; libs/core/errors.py derives the categories from it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Reason(StrEnum):
    """Every reason of the catalogue, in number order (see docs/reasons.md)."""

    # 1, INVALID_ARGUMENT: The request is malformed: a required field is missing, a value is out of its range or
    # malformed. The google.rpc.BadRequest detail names every bad field (field path and description); fix the request.
    # metadata field: the first bad field, when a field beyond its bound (docs/bounds.md) was refused before the
    # method's own checks.
    VALIDATION_FAILED = "REASON_VALIDATION_FAILED"
    # 2, ALREADY_EXISTS: The request_id was already used by the same caller for a request with another payload (or
    # another operation); the first request stands. Send a new request_id for a new request.
    REQUEST_ID_REUSED = "REASON_REQUEST_ID_REUSED"
    # 3, ABORTED: The record changed between reading and writing it (a concurrent call won); nothing was written.
    # Retry with the same request_id.
    CONCURRENT_UPDATE = "REASON_CONCURRENT_UPDATE"
    # 4, UNAVAILABLE: A dependency (the service's own database, or a peer service) did not answer, or a statement or
    # lock wait exceeded its limit; nothing was written. Retry with the same request_id. metadata dependency:
    # "database" or the peer's name (e.g. "eligibility").
    DEPENDENCY_UNAVAILABLE = "REASON_DEPENDENCY_UNAVAILABLE"
    # 5, UNAUTHENTICATED: The call carries no caller identity (no client certificate, no trusted identity header).
    INSTITUTION_IDENTITY_MISSING = "REASON_INSTITUTION_IDENTITY_MISSING"
    # 6, PERMISSION_DENIED: The request names, or the record belongs to, another institution than the caller. metadata
    # field: the request field that must be the caller's (absent when a stored record's owner was checked).
    NOT_AUTHORISED_FOR_INSTITUTION = "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    # 7, INTERNAL: An unexpected failure (a bug). The message is generic; quote trace_id to support. Safe to retry a
    # mutating call with the same request_id.
    INTERNAL_ERROR = "REASON_INTERNAL_ERROR"
    # 8, INTERNAL: A result failed one of its own consistency checks (money identities, ledger balance) and was not
    # stored or returned. A bug; quote the trace id.
    INVARIANT_VIOLATED = "REASON_INVARIANT_VIOLATED"
    # 9, NOT_FOUND: No region with that code in the registry. Reserved: not raised at present.
    REGION_NOT_FOUND = "REASON_REGION_NOT_FOUND"
    # 10, NOT_FOUND: No designated institution with that code (or clearing holds nothing of it). Also a
    # CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the
    # decision's, comma-separated).
    INSTITUTION_NOT_FOUND = "REASON_INSTITUTION_NOT_FOUND"
    # 11, FAILED_PRECONDITION: The institution is not networked for cross-province direct settlement (of this service
    # type or special disease). Also a CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it
    # carries metadata reasons (all of the decision's, comma-separated).
    INSTITUTION_NOT_NETWORKED = "REASON_INSTITUTION_NOT_NETWORKED"
    # 12, NOT_FOUND: No insured person with that number, or the credential's person is not insured here.
    PERSON_NOT_FOUND = "REASON_PERSON_NOT_FOUND"
    # 13, FAILED_PRECONDITION: The person's insurance is suspended or ended on the date. Also a CheckEligibility
    # decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the decision's,
    # comma-separated).
    PERSON_NOT_ACTIVE = "REASON_PERSON_NOT_ACTIVE"
    # 14, INVALID_ARGUMENT: No usable credential: neither an e-certificate token nor a card, or an unknown
    # e-certificate.
    CREDENTIAL_INVALID = "REASON_CREDENTIAL_INVALID"
    # 15, FAILED_PRECONDITION: The e-certificate has expired: the person refreshes the QR code.
    CREDENTIAL_EXPIRED = "REASON_CREDENTIAL_EXPIRED"
    # 16, FAILED_PRECONDITION: The e-certificate's signature does not verify against any known key.
    CREDENTIAL_TAMPERED = "REASON_CREDENTIAL_TAMPERED"
    # 17, FAILED_PRECONDITION: The e-certificate was revoked by the insured place.
    CREDENTIAL_REVOKED = "REASON_CREDENTIAL_REVOKED"
    # 18, FAILED_PRECONDITION: The credential belongs to another person than the one named or registered.
    CREDENTIAL_PERSON_MISMATCH = "REASON_CREDENTIAL_PERSON_MISMATCH"
    # 19, FAILED_PRECONDITION: The card serial does not match the social security card.
    CARD_SERIAL_MISMATCH = "REASON_CARD_SERIAL_MISMATCH"
    # 20, NOT_FOUND: No filing with that id.
    FILING_NOT_FOUND = "REASON_FILING_NOT_FOUND"
    # 21, FAILED_PRECONDITION: Cross-province treatment needs a filing (record) of the person for the treatment place,
    # and none is active on the date (and the visit is no emergency). Also a CheckEligibility decision reason;
    # refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the decision's, comma-separated).
    FILING_REQUIRED = "REASON_FILING_REQUIRED"
    # 22, FAILED_PRECONDITION: The person's filing is for another treatment region than the institution's. Also a
    # CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the
    # decision's, comma-separated).
    FILING_REGION_MISMATCH = "REASON_FILING_REGION_MISMATCH"
    # 23, INVALID_ARGUMENT: The filing's period is not allowed (a temporary filing shorter than its minimum, a change
    # starting before the filing it replaces). metadata earliest_end_date: YYYY-MM-DD, when a later end date would be
    # valid.
    FILING_PERIOD_INVALID = "REASON_FILING_PERIOD_INVALID"
    # 24, FAILED_PRECONDITION: A long-term filing can be changed or cancelled only after its minimum period. metadata
    # earliest: YYYY-MM-DD, the first day it can.
    FILING_MIN_PERIOD_NOT_REACHED = "REASON_FILING_MIN_PERIOD_NOT_REACHED"
    # 25, FAILED_PRECONDITION: The filing is cancelled or replaced; only an active filing can be changed or cancelled.
    FILING_NOT_ACTIVE = "REASON_FILING_NOT_ACTIVE"
    # 26, INVALID_ARGUMENT: The person's signed commitment is missing from the filing.
    FILING_COMMITMENT_MISSING = "REASON_FILING_COMMITMENT_MISSING"
    # 27, FAILED_PRECONDITION: A special (chronic) disease is filed with more institutions than allowed.
    SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS = "REASON_SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS"
    # 28, FAILED_PRECONDITION: The institution has not opened direct settlement for that special disease. Also a
    # CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the
    # decision's, comma-separated).
    SPECIAL_DISEASE_NOT_OPENED = "REASON_SPECIAL_DISEASE_NOT_OPENED"
    # 29, FAILED_PRECONDITION: The person has no filing for that special disease at the institution. Also a
    # CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the
    # decision's, comma-separated).
    SPECIAL_DISEASE_NOT_FILED = "REASON_SPECIAL_DISEASE_NOT_FILED"
    # 30, NOT_FOUND: The policy version named (label@hash) is not known to this process.
    POLICY_NOT_FOUND = "REASON_POLICY_NOT_FOUND"
    # 31, INVALID_ARGUMENT: A policy (or registry rules) file is not valid; the file and its problems are logged.
    POLICY_DATA_INVALID = "REASON_POLICY_DATA_INVALID"
    # 32, NOT_FOUND: The catalogue version named (label@hash) is not known to this process.
    CATALOGUE_NOT_FOUND = "REASON_CATALOGUE_NOT_FOUND"
    # 33, INVALID_ARGUMENT: A catalogue file is not valid (not YAML, a duplicate label, a bad entry).
    CATALOGUE_DATA_INVALID = "REASON_CATALOGUE_DATA_INVALID"
    # 34, INVALID_ARGUMENT: An item code is malformed (not a national medical insurance code). BadRequest names the
    # line.
    ITEM_CODE_INVALID = "REASON_ITEM_CODE_INVALID"
    # 35, INVALID_ARGUMENT: A fee line is malformed (line number, refund reference). BadRequest names the field.
    FEE_LINE_INVALID = "REASON_FEE_LINE_INVALID"
    # 36, INVALID_ARGUMENT: A quantity is zero or out of range. BadRequest names the line.
    QUANTITY_INVALID = "REASON_QUANTITY_INVALID"
    # 37, INVALID_ARGUMENT: A unit price is negative or out of range. BadRequest names the line.
    PRICE_INVALID = "REASON_PRICE_INVALID"
    # 38, INVALID_ARGUMENT: An amount is outside what is allowed (e.g. a deduction above what the settlement's funds
    # have left). metadata remaining_fen: the most that is allowed, when known.
    AMOUNT_OUT_OF_RANGE = "REASON_AMOUNT_OUT_OF_RANGE"
    # 39, INVALID_ARGUMENT: A refund line refunds no uploaded line, or more than the line's quantity.
    REFUND_LINE_UNMATCHED = "REASON_REFUND_LINE_UNMATCHED"
    # 40, NOT_FOUND: No visit with that id (visible to the caller).
    VISIT_NOT_FOUND = "REASON_VISIT_NOT_FOUND"
    # 41, FAILED_PRECONDITION: The visit's state does not allow the call (already open for that hospital visit number,
    # settled, cancelled, lines already settled).
    VISIT_STATE_INVALID = "REASON_VISIT_STATE_INVALID"
    # 42, FAILED_PRECONDITION: Nothing to settle: the visit has no unsettled fee lines. Upload fees first.
    VISIT_HAS_NO_FEES = "REASON_VISIT_HAS_NO_FEES"
    # 43, NOT_FOUND: No settlement (or manual claim) with that id visible to the caller.
    SETTLEMENT_NOT_FOUND = "REASON_SETTLEMENT_NOT_FOUND"
    # 44, FAILED_PRECONDITION: The settlement was already cancelled. metadata cancellation_id: the cancellation, when
    # known.
    SETTLEMENT_ALREADY_REVERSED = "REASON_SETTLEMENT_ALREADY_REVERSED"
    # 45, NOT_FOUND: No transaction with that request id. Reserved: ReverseTransaction answers reversed=false for an
    # id never seen instead.
    TRANSACTION_NOT_FOUND = "REASON_TRANSACTION_NOT_FOUND"
    # 46, FAILED_PRECONDITION: Reserved: an overlapping inpatient stay is flagged (MON_OVERLAPPING_INPATIENT_STAY),
    # not refused.
    OVERLAPPING_INPATIENT_STAY = "REASON_OVERLAPPING_INPATIENT_STAY"
    # 47, NOT_FOUND: No statement with that id (or for that province pair and month): run the monthly clearing first.
    STATEMENT_NOT_FOUND = "REASON_STATEMENT_NOT_FOUND"
    # 48, FAILED_PRECONDITION: The statement's status does not allow the step. metadata status: its current status.
    STATEMENT_STATE_INVALID = "REASON_STATEMENT_STATE_INVALID"
    # 49, FAILED_PRECONDITION: Reserved: the clearing period is closed. Not raised at present.
    PERIOD_CLOSED = "REASON_PERIOD_CLOSED"
    # 50, NOT_FOUND: No annual prepayment for that province pair and year.
    PREPAYMENT_NOT_FOUND = "REASON_PREPAYMENT_NOT_FOUND"
    # 51, FAILED_PRECONDITION: An emergency top-up is allowed only when the month's clearing exceeds 90% of the
    # prepayment.
    TOP_UP_NOT_ALLOWED = "REASON_TOP_UP_NOT_ALLOWED"
    # 52, FAILED_PRECONDITION: The top-up would exceed its cap. metadata cap_fen, granted_fen: the cap and what was
    # already granted.
    TOP_UP_ABOVE_CAP = "REASON_TOP_UP_ABOVE_CAP"
    # 53, NOT_FOUND: No verification request with that id.
    VERIFICATION_NOT_FOUND = "REASON_VERIFICATION_NOT_FOUND"
    # 54, FAILED_PRECONDITION: The verification's answer was due earlier; it can no longer be answered.
    VERIFICATION_DEADLINE_PASSED = "REASON_VERIFICATION_DEADLINE_PASSED"
    # 55, FAILED_PRECONDITION: Treatment in the insured province is not cross-province settlement (an eligibility
    # reason). Also a CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata
    # reasons (all of the decision's, comma-separated).
    INTRA_PROVINCE_NOT_CROSS_PROVINCE = "REASON_INTRA_PROVINCE_NOT_CROSS_PROVINCE"
    # 56, FAILED_PRECONDITION: The person's filing does not cover the treatment date. Also a CheckEligibility decision
    # reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the decision's, comma-
    # separated).
    FILING_NOT_VALID_ON_DATE = "REASON_FILING_NOT_VALID_ON_DATE"
    # 57, FAILED_PRECONDITION: The person's insured relation changed after the filing was made: file again. Also a
    # CheckEligibility decision reason; refusing OpenVisit / SettleOutpatient it carries metadata reasons (all of the
    # decision's, comma-separated).
    FILING_INSURED_RELATION_CHANGED = "REASON_FILING_INSURED_RELATION_CHANGED"
    # 58, ALREADY_EXISTS: The ID number or card of the person being registered belongs to another insured person.
    PERSON_IDENTITY_CONFLICT = "REASON_PERSON_IDENTITY_CONFLICT"
    # 59, INVALID_ARGUMENT: A registry file (regions, institutions) is not valid; the problems are logged.
    REGISTRY_DATA_INVALID = "REASON_REGISTRY_DATA_INVALID"
    # 60, UNAVAILABLE: Eligibility is still loading the filing feed after a start; retry shortly (same request id).
    FILING_INDEX_NOT_READY = "REASON_FILING_INDEX_NOT_READY"
    # 61, FAILED_PRECONDITION: The institution is not in the filing's treatment region.
    INSTITUTION_REGION_MISMATCH = "REASON_INSTITUTION_REGION_MISMATCH"
    # 70, FAILED_PRECONDITION: The verification request was already answered.
    VERIFICATION_ALREADY_ANSWERED = "REASON_VERIFICATION_ALREADY_ANSWERED"
    # 71, ALREADY_EXISTS: The year's prepayment for that province pair is already set.
    PREPAYMENT_ALREADY_SET = "REASON_PREPAYMENT_ALREADY_SET"
    # 72, FAILED_PRECONDITION: A payment to an institution exceeds what is still owed to it.
    INSTITUTION_PAYMENT_EXCEEDS_OUTSTANDING = "REASON_INSTITUTION_PAYMENT_EXCEEDS_OUTSTANDING"
    # 73, FAILED_PRECONDITION: No policy of the insured place covers the date. metadata region, insurance_type, date
    # (YYYY-MM-DD).
    NO_POLICY_IN_EFFECT = "REASON_NO_POLICY_IN_EFFECT"
    # 74, FAILED_PRECONDITION: No catalogue of the treatment place covers the date. metadata region, date (YYYY-MM-
    # DD).
    NO_CATALOGUE_IN_EFFECT = "REASON_NO_CATALOGUE_IN_EFFECT"
    # 75, FAILED_PRECONDITION: The policy in effect defines no benefit for the visit's service type. metadata
    # policy_version, service_type.
    SERVICE_NOT_COVERED = "REASON_SERVICE_NOT_COVERED"
    # 80, NOT_FOUND: The item code is not in the treatment-place catalogue in effect on the date. metadata region,
    # item_code, catalogue_version.
    CATALOGUE_ITEM_NOT_FOUND = "REASON_CATALOGUE_ITEM_NOT_FOUND"
    # 81, INVALID_ARGUMENT: The page token is malformed, or was issued for other filters (the BadRequest names
    # page_token).
    PAGE_TOKEN_INVALID = "REASON_PAGE_TOKEN_INVALID"
    # 82, INVALID_ARGUMENT: The page token was issued for another catalogue version than the one now in effect (the
    # catalogue changed between pages): list again from the first page. metadata token_catalogue_version,
    # catalogue_version.
    CATALOGUE_CHANGED = "REASON_CATALOGUE_CHANGED"
    # 83, NOT_FOUND: No visit of the person is visible to the caller, so there are no accumulators to show. metadata
    # year.
    ACCUMULATORS_NOT_FOUND = "REASON_ACCUMULATORS_NOT_FOUND"
    # 85, FAILED_PRECONDITION: A trauma diagnosis needs the person's declaration that no third party is liable
    # (trauma_no_third_party_declared).
    TRAUMA_DECLARATION_REQUIRED = "REASON_TRAUMA_DECLARATION_REQUIRED"
    # 90, UNAUTHENTICATED: More than one identity header (x-medsettle-principal, x-medsettle-institution) on one call.
    CALLER_IDENTITY_AMBIGUOUS = "REASON_CALLER_IDENTITY_AMBIGUOUS"
    # 91, UNAUTHENTICATED: The identity header or the client certificate's URI SAN is not a medsettle identity
    # (docs/access.md), or the headers came from a peer they are not trusted from.
    CALLER_IDENTITY_INVALID = "REASON_CALLER_IDENTITY_INVALID"
    # 92, PERMISSION_DENIED: The access table does not open this method to the caller's role.
    ROLE_NOT_ALLOWED = "REASON_ROLE_NOT_ALLOWED"
    # 93, PERMISSION_DENIED: The method has no rule in the access table (deny by default).
    METHOD_NOT_OPEN = "REASON_METHOD_NOT_OPEN"
    # 94, PERMISSION_DENIED: A bureau acting on another region's data. metadata region_code: the record's region;
    # field: the request field checked (absent when a stored record's region was checked).
    NOT_AUTHORISED_FOR_REGION = "REASON_NOT_AUTHORISED_FOR_REGION"
    # 95, PERMISSION_DENIED: The insured person's app acting for another person.
    NOT_AUTHORISED_FOR_PERSON = "REASON_NOT_AUTHORISED_FOR_PERSON"
    # 100, FAILED_PRECONDITION: An earlier expense verification of the settlement is still unanswered; at most one is
    # open per settlement. metadata verification_id: the open one.
    VERIFICATION_ALREADY_OPEN = "REASON_VERIFICATION_ALREADY_OPEN"
    # 101, FAILED_PRECONDITION: The person filed after a self-paid discharge and the filing covers the treatment date
    # before its start: the stay is reimbursed manually under the insured place's rules (SubmitManualClaim), not
    # settled directly. metadata filing_id.
    MANUAL_REIMBURSEMENT_REQUIRED = "REASON_MANUAL_REIMBURSEMENT_REQUIRED"
    # 102, FAILED_PRECONDITION: The same stay (person, institution, service type, overlapping dates or the same
    # hospital visit number) is already settled directly or claimed manually. metadata visit_id and settlement_id (a
    # direct settlement came first; settlement_id empty while the visit is open) or claim_id (a manual claim came
    # first).
    STAY_ALREADY_PAID = "REASON_STAY_ALREADY_PAID"
    # 103, FAILED_PRECONDITION: ReverseTransaction names a request that did something that cannot be reversed (e.g. a
    # fee upload: replace or refund the lines instead); nothing was undone. metadata operation: what the original
    # request did.
    TRANSACTION_NOT_REVERSIBLE = "REASON_TRANSACTION_NOT_REVERSIBLE"
    # 104, FAILED_PRECONDITION: An emergency top-up goes requested -> approved or refused (national operator) ->
    # disbursed (approved only). metadata status: the top-up's current one.
    TOP_UP_STATE_INVALID = "REASON_TOP_UP_STATE_INVALID"
    # 105, NOT_FOUND: No emergency top-up with that id.
    TOP_UP_NOT_FOUND = "REASON_TOP_UP_NOT_FOUND"
    # 106, ABORTED: Home movements: the totals a movement was computed from are no longer the totals (an away
    # settlement or another report came first). Compute again from the current ones (in the metadata, fen) and report
    # again.
    ACCUMULATORS_CHANGED = "REASON_ACCUMULATORS_CHANGED"
    # 107, FAILED_PRECONDITION: A personal-account debit the balance does not cover: pay that part in cash.
    ACCOUNT_INSUFFICIENT = "REASON_ACCOUNT_INSUFFICIENT"
    # 108, FAILED_PRECONDITION: A negative delta larger than the total it reduces (report the movements in order).
    MOVEMENT_EXCEEDS_TOTALS = "REASON_MOVEMENT_EXCEEDS_TOTALS"
    # 109, INVALID_ARGUMENT: A movement id the bureau already used for a movement with other content.
    MOVEMENT_ID_REUSED = "REASON_MOVEMENT_ID_REUSED"
    # 120, UNAVAILABLE: The database's answer to COMMIT was lost and the service could not find out whether the
    # request was stored. Retry with the SAME request_id: the retry answers the stored result if it was, or runs the
    # request once if it was not. metadata dependency.
    COMMIT_OUTCOME_UNKNOWN = "REASON_COMMIT_OUTCOME_UNKNOWN"
    # 121, UNAVAILABLE: The server is shutting down and takes no new calls; retry (with the same request_id) on
    # another replica or after the restart. metadata service.
    SERVER_DRAINING = "REASON_SERVER_DRAINING"
    # 122, RESOURCE_EXHAUSTED: The server already holds as many feed streams (followers) as it allows, or a follower
    # fell too far behind; resume later from the last position received. metadata limit.
    TOO_MANY_FOLLOWERS = "REASON_TOO_MANY_FOLLOWERS"
    # 130, INVALID_ARGUMENT: The request's bytes do not parse as the method's request message (invalid UTF-8 in a
    # string field included). Do not retry unchanged.
    REQUEST_UNPARSEABLE = "REASON_REQUEST_UNPARSEABLE"


class ReasonInfo(NamedTuple):
    number: int
    code: str  # the gRPC status code's name (google.rpc.Code)
    metadata_keys: tuple[str, ...]  # the keys ErrorInfo.metadata can carry


REASON_INFO: dict[Reason, ReasonInfo] = {
    Reason.VALIDATION_FAILED: ReasonInfo(1, "INVALID_ARGUMENT", ("field",)),
    Reason.REQUEST_ID_REUSED: ReasonInfo(2, "ALREADY_EXISTS", ("operation",)),
    Reason.CONCURRENT_UPDATE: ReasonInfo(3, "ABORTED", ()),
    Reason.DEPENDENCY_UNAVAILABLE: ReasonInfo(4, "UNAVAILABLE", ("dependency",)),
    Reason.INSTITUTION_IDENTITY_MISSING: ReasonInfo(5, "UNAUTHENTICATED", ("method",)),
    Reason.NOT_AUTHORISED_FOR_INSTITUTION: ReasonInfo(6, "PERMISSION_DENIED", ("method", "field")),
    Reason.INTERNAL_ERROR: ReasonInfo(7, "INTERNAL", ("trace_id",)),
    Reason.INVARIANT_VIOLATED: ReasonInfo(8, "INTERNAL", ()),
    Reason.REGION_NOT_FOUND: ReasonInfo(9, "NOT_FOUND", ()),
    Reason.INSTITUTION_NOT_FOUND: ReasonInfo(10, "NOT_FOUND", ("reasons",)),
    Reason.INSTITUTION_NOT_NETWORKED: ReasonInfo(11, "FAILED_PRECONDITION", ("reasons",)),
    Reason.PERSON_NOT_FOUND: ReasonInfo(12, "NOT_FOUND", ()),
    Reason.PERSON_NOT_ACTIVE: ReasonInfo(13, "FAILED_PRECONDITION", ("reasons",)),
    Reason.CREDENTIAL_INVALID: ReasonInfo(14, "INVALID_ARGUMENT", ()),
    Reason.CREDENTIAL_EXPIRED: ReasonInfo(15, "FAILED_PRECONDITION", ()),
    Reason.CREDENTIAL_TAMPERED: ReasonInfo(16, "FAILED_PRECONDITION", ()),
    Reason.CREDENTIAL_REVOKED: ReasonInfo(17, "FAILED_PRECONDITION", ()),
    Reason.CREDENTIAL_PERSON_MISMATCH: ReasonInfo(18, "FAILED_PRECONDITION", ()),
    Reason.CARD_SERIAL_MISMATCH: ReasonInfo(19, "FAILED_PRECONDITION", ()),
    Reason.FILING_NOT_FOUND: ReasonInfo(20, "NOT_FOUND", ()),
    Reason.FILING_REQUIRED: ReasonInfo(21, "FAILED_PRECONDITION", ("reasons",)),
    Reason.FILING_REGION_MISMATCH: ReasonInfo(22, "FAILED_PRECONDITION", ("reasons",)),
    Reason.FILING_PERIOD_INVALID: ReasonInfo(23, "INVALID_ARGUMENT", ("earliest_end_date",)),
    Reason.FILING_MIN_PERIOD_NOT_REACHED: ReasonInfo(24, "FAILED_PRECONDITION", ("earliest",)),
    Reason.FILING_NOT_ACTIVE: ReasonInfo(25, "FAILED_PRECONDITION", ()),
    Reason.FILING_COMMITMENT_MISSING: ReasonInfo(26, "INVALID_ARGUMENT", ()),
    Reason.SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS: ReasonInfo(27, "FAILED_PRECONDITION", ()),
    Reason.SPECIAL_DISEASE_NOT_OPENED: ReasonInfo(28, "FAILED_PRECONDITION", ("reasons",)),
    Reason.SPECIAL_DISEASE_NOT_FILED: ReasonInfo(29, "FAILED_PRECONDITION", ("reasons",)),
    Reason.POLICY_NOT_FOUND: ReasonInfo(30, "NOT_FOUND", ()),
    Reason.POLICY_DATA_INVALID: ReasonInfo(31, "INVALID_ARGUMENT", ()),
    Reason.CATALOGUE_NOT_FOUND: ReasonInfo(32, "NOT_FOUND", ()),
    Reason.CATALOGUE_DATA_INVALID: ReasonInfo(33, "INVALID_ARGUMENT", ()),
    Reason.ITEM_CODE_INVALID: ReasonInfo(34, "INVALID_ARGUMENT", ()),
    Reason.FEE_LINE_INVALID: ReasonInfo(35, "INVALID_ARGUMENT", ()),
    Reason.QUANTITY_INVALID: ReasonInfo(36, "INVALID_ARGUMENT", ()),
    Reason.PRICE_INVALID: ReasonInfo(37, "INVALID_ARGUMENT", ()),
    Reason.AMOUNT_OUT_OF_RANGE: ReasonInfo(38, "INVALID_ARGUMENT", ("remaining_fen",)),
    Reason.REFUND_LINE_UNMATCHED: ReasonInfo(39, "INVALID_ARGUMENT", ()),
    Reason.VISIT_NOT_FOUND: ReasonInfo(40, "NOT_FOUND", ()),
    Reason.VISIT_STATE_INVALID: ReasonInfo(41, "FAILED_PRECONDITION", ()),
    Reason.VISIT_HAS_NO_FEES: ReasonInfo(42, "FAILED_PRECONDITION", ()),
    Reason.SETTLEMENT_NOT_FOUND: ReasonInfo(43, "NOT_FOUND", ()),
    Reason.SETTLEMENT_ALREADY_REVERSED: ReasonInfo(44, "FAILED_PRECONDITION", ("cancellation_id",)),
    Reason.TRANSACTION_NOT_FOUND: ReasonInfo(45, "NOT_FOUND", ()),
    Reason.OVERLAPPING_INPATIENT_STAY: ReasonInfo(46, "FAILED_PRECONDITION", ()),
    Reason.STATEMENT_NOT_FOUND: ReasonInfo(47, "NOT_FOUND", ()),
    Reason.STATEMENT_STATE_INVALID: ReasonInfo(48, "FAILED_PRECONDITION", ("status",)),
    Reason.PERIOD_CLOSED: ReasonInfo(49, "FAILED_PRECONDITION", ()),
    Reason.PREPAYMENT_NOT_FOUND: ReasonInfo(50, "NOT_FOUND", ()),
    Reason.TOP_UP_NOT_ALLOWED: ReasonInfo(51, "FAILED_PRECONDITION", ()),
    Reason.TOP_UP_ABOVE_CAP: ReasonInfo(52, "FAILED_PRECONDITION", ("cap_fen", "granted_fen")),
    Reason.VERIFICATION_NOT_FOUND: ReasonInfo(53, "NOT_FOUND", ()),
    Reason.VERIFICATION_DEADLINE_PASSED: ReasonInfo(54, "FAILED_PRECONDITION", ()),
    Reason.INTRA_PROVINCE_NOT_CROSS_PROVINCE: ReasonInfo(55, "FAILED_PRECONDITION", ("reasons",)),
    Reason.FILING_NOT_VALID_ON_DATE: ReasonInfo(56, "FAILED_PRECONDITION", ("reasons",)),
    Reason.FILING_INSURED_RELATION_CHANGED: ReasonInfo(57, "FAILED_PRECONDITION", ("reasons",)),
    Reason.PERSON_IDENTITY_CONFLICT: ReasonInfo(58, "ALREADY_EXISTS", ()),
    Reason.REGISTRY_DATA_INVALID: ReasonInfo(59, "INVALID_ARGUMENT", ()),
    Reason.FILING_INDEX_NOT_READY: ReasonInfo(60, "UNAVAILABLE", ()),
    Reason.INSTITUTION_REGION_MISMATCH: ReasonInfo(61, "FAILED_PRECONDITION", ()),
    Reason.VERIFICATION_ALREADY_ANSWERED: ReasonInfo(70, "FAILED_PRECONDITION", ()),
    Reason.PREPAYMENT_ALREADY_SET: ReasonInfo(71, "ALREADY_EXISTS", ()),
    Reason.INSTITUTION_PAYMENT_EXCEEDS_OUTSTANDING: ReasonInfo(72, "FAILED_PRECONDITION", ()),
    Reason.NO_POLICY_IN_EFFECT: ReasonInfo(73, "FAILED_PRECONDITION", ("region", "insurance_type", "date")),
    Reason.NO_CATALOGUE_IN_EFFECT: ReasonInfo(74, "FAILED_PRECONDITION", ("region", "date")),
    Reason.SERVICE_NOT_COVERED: ReasonInfo(75, "FAILED_PRECONDITION", ("policy_version", "service_type")),
    Reason.CATALOGUE_ITEM_NOT_FOUND: ReasonInfo(80, "NOT_FOUND", ("region", "item_code", "catalogue_version")),
    Reason.PAGE_TOKEN_INVALID: ReasonInfo(81, "INVALID_ARGUMENT", ()),
    Reason.CATALOGUE_CHANGED: ReasonInfo(82, "INVALID_ARGUMENT", ("token_catalogue_version", "catalogue_version")),
    Reason.ACCUMULATORS_NOT_FOUND: ReasonInfo(83, "NOT_FOUND", ("year",)),
    Reason.TRAUMA_DECLARATION_REQUIRED: ReasonInfo(85, "FAILED_PRECONDITION", ()),
    Reason.CALLER_IDENTITY_AMBIGUOUS: ReasonInfo(90, "UNAUTHENTICATED", ()),
    Reason.CALLER_IDENTITY_INVALID: ReasonInfo(91, "UNAUTHENTICATED", ()),
    Reason.ROLE_NOT_ALLOWED: ReasonInfo(92, "PERMISSION_DENIED", ("method", "role")),
    Reason.METHOD_NOT_OPEN: ReasonInfo(93, "PERMISSION_DENIED", ("method",)),
    Reason.NOT_AUTHORISED_FOR_REGION: ReasonInfo(94, "PERMISSION_DENIED", ("method", "field", "role", "region_code")),
    Reason.NOT_AUTHORISED_FOR_PERSON: ReasonInfo(95, "PERMISSION_DENIED", ("method", "field", "role")),
    Reason.VERIFICATION_ALREADY_OPEN: ReasonInfo(100, "FAILED_PRECONDITION", ("verification_id",)),
    Reason.MANUAL_REIMBURSEMENT_REQUIRED: ReasonInfo(101, "FAILED_PRECONDITION", ("filing_id",)),
    Reason.STAY_ALREADY_PAID: ReasonInfo(102, "FAILED_PRECONDITION", ("visit_id", "settlement_id", "claim_id")),
    Reason.TRANSACTION_NOT_REVERSIBLE: ReasonInfo(103, "FAILED_PRECONDITION", ("operation",)),
    Reason.TOP_UP_STATE_INVALID: ReasonInfo(104, "FAILED_PRECONDITION", ("status",)),
    Reason.TOP_UP_NOT_FOUND: ReasonInfo(105, "NOT_FOUND", ()),
    Reason.ACCUMULATORS_CHANGED: ReasonInfo(
        106,
        "ABORTED",
        (
            "movement_id",
            "year",
            "inpatient_deductible_borne_fen",
            "outpatient_deductible_borne_fen",
            "pooled_base_fen",
            "pooled_paid_fen",
            "ci_burden_fen",
            "ci_paid_fen",
            "assistance_base_fen",
            "assistance_paid_fen",
            "admissions",
            "outpatient_pooled_base_fen",
            "outpatient_pooled_paid_fen",
        ),
    ),
    Reason.ACCOUNT_INSUFFICIENT: ReasonInfo(107, "FAILED_PRECONDITION", ("movement_id", "balance_fen")),
    Reason.MOVEMENT_EXCEEDS_TOTALS: ReasonInfo(108, "FAILED_PRECONDITION", ("movement_id", "field")),
    Reason.MOVEMENT_ID_REUSED: ReasonInfo(109, "INVALID_ARGUMENT", ("movement_id",)),
    Reason.COMMIT_OUTCOME_UNKNOWN: ReasonInfo(120, "UNAVAILABLE", ("dependency",)),
    Reason.SERVER_DRAINING: ReasonInfo(121, "UNAVAILABLE", ("service",)),
    Reason.TOO_MANY_FOLLOWERS: ReasonInfo(122, "RESOURCE_EXHAUSTED", ("limit",)),
    Reason.REQUEST_UNPARSEABLE: ReasonInfo(130, "INVALID_ARGUMENT", ()),
}
