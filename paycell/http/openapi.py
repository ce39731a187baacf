"""The API's OpenAPI 3.1 description, generated from the same msgspec Structs the handlers use,
so it cannot drift from what the API accepts and answers. Served at GET /openapi.json."""
from __future__ import annotations

import msgspec

from paycell import schemas
from paycell.http.errors import ErrorBody
from paycell.http.health import ReadyView
from paycell.http.instruments import INSTRUMENTS_PATH
from paycell.http.payments import PAYMENTS_PATH, WALLET_PATH
from paycell.http.returns import RETURN_PATH
from paycell.http import reconcile, risk_rules
from paycell.reconcile import report
from paycell.http.risk_rules import LISTS_PATH, RULE_SETS_PATH
from paycell.http.reversals import REVERSALS_PATH
from paycell.http.reviews import REVIEWS_PATH
from paycell.http.schedules import SCHEDULES_PATH
from paycell.http.webhooks import WEBHOOK_PATH
from paycell.refs import USER_ID


_STRUCTS = (schemas.PaymentIn, schemas.PaymentView, schemas.PaymentDetail, schemas.PaymentList,
            schemas.WalletView, ErrorBody, ReadyView,
            schemas.InstrumentIn, schemas.InstrumentView, schemas.InstrumentList, *risk_rules.STRUCTS,
            schemas.ResolveIn, schemas.ReviewView, schemas.ReviewDetail, schemas.ReviewList,
            schemas.ScheduleIn, schemas.ScheduleUpdate, schemas.ScheduleView, schemas.ScheduleList,
            *reconcile.STRUCTS, schemas.ReversalIn, schemas.ReversalView, schemas.ReversalList)
_ERROR_MEANINGS = {
    400: "the request is malformed (query, JSON body, duplicate keys, Prefer header)",
    401: "no valid bearer token",
    403: "the body names another user or another user's wallet",
    404: "no such payment (another user's payment is not found either)",
    408: "the request body did not arrive in time",
    409: "a request with this payment_id is still being handled",
    413: "the request body is too large",
    415: "the body is not application/json",
    422: "well-formed but refused: amount, currency, accounts, or a payment_id reused with another body",
    429: "too many payment requests for this user or instrument; retry after Retry-After seconds",
    503: "overloaded, the payment pipeline is behind (new payments only), or a store does not answer; retry after Retry-After seconds",
}
# Headers some error answers always carry.
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    503: {"Retry-After": {"required": True, "description": "seconds", "schema": {"type": "string",
                                                                                  "pattern": "^[0-9]+$"}}},
    429: {"Retry-After": {"required": True, "description": "seconds", "schema": {"type": "string",
                                                                                  "pattern": "^[0-9]+$"}},
          "RateLimit-Policy": {"required": True, "schema": {"type": "string"}},
          "RateLimit": {"required": True, "schema": {"type": "string"}}},
}
# Every authenticated operation may answer these, whatever it does.
_AUTHENTICATED = (401, 503)
_WITH_BODY = (400, 408, 413, 415)


def _ref(struct) -> dict:
    return {"$ref": f"#/components/schemas/{struct.__name__}"}


def _json(struct) -> dict:
    return {"content": {"application/json": {"schema": _ref(struct)}}}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": f"{_ERROR_MEANINGS[s]}; `error.code` is stable", **_json(ErrorBody),
                     **({"headers": _ERROR_HEADERS[s]} if s in _ERROR_HEADERS else {})}
            for s in sorted(set(statuses))}


def _error(description: str) -> dict:
    return {"description": f"{description}; `error.code` is stable", **_json(ErrorBody)}


_WEBHOOK = {
    "post": {
        "operationId": "receiveProviderWebhook",
        "summary": "A PSP's webhook delivery (no bearer token: signed in the provider's own scheme). "
                   "Verified by the connector, stored once per event id, answered with the acknowledgement "
                   "the provider expects, then applied to its payment asynchronously",
        "security": [],
        "parameters": [{"name": "connector", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}$"},
                        "description": "the connector's registered name (simulator, stripe, adyen, paypal, bank)"}],
        "requestBody": {"required": True, "description": "the provider's event(s), byte for byte as it signed them",
                        "content": {"application/json": {"schema": {}}}},
        "responses": {
            "200": {"description": "stored now or before (a replay changes nothing); the body is what the "
                                   "provider expects (e.g. Adyen's `[accepted]`)"},
            "400": _error("`webhook_rejected`: forged, stale or unreadable (nothing stored); "
                          "`invalid_request`: no event, or too many in one delivery"),
            "404": _error("no connector by that name is registered and configured here"),
            **_errors(408, 413, 415, 503)}}}
_RETURN = {
    "get": {
        "operationId": "customerReturned",
        "summary": "Where a provider sends the customer back after an action (PAYCELL_PSP_RETURN_URL): no bearer "
                   "token; a payment still waiting for its customer is asked of its provider at once. The answer "
                   "is the same for any order",
        "security": [],
        "parameters": [{"name": "order_id", "in": "query", "required": True,
                        "schema": {"type": "string", "format": "uuid"}},
                       {"name": "user_id", "in": "query", "required": False,
                        "description": "the order's user (return URLs issued before it was added omit it)",
                        "schema": {"type": "string", "pattern": f"^{USER_ID.pattern}$"}}],
        "responses": {
            "200": {"description": "received", "content": {"application/json": {"schema": {
                "type": "object", "required": ["object", "received"],
                "properties": {"object": {"const": "payment_return"}, "received": {"const": True}}}}}},
            "400": _error("`invalid_request`: order_id is not a UUID, or user_id not a user id"),
            **_errors(503)}}}
_FORBIDDEN = _error("`forbidden`: the token lacks the operator role (this route is for operators)")
_PAGE = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
         {"name": "starting_after", "in": "query", "schema": {"type": "string"},
          "description": "the next_cursor of the previous page"}]
_RULES_REFUSED = _error("`rules_invalid` (a rule names an unknown field or list, types that do not compare, ...) or "
                        "`rules_syntax` (the text does not parse): `error.problems` lists every problem with its "
                        "line and column, and nothing is stored; `rules_empty`, `rules_too_large`, `note_too_long`; "
                        "`idempotency_key_reused`: the Idempotency-Key came with another body")
_VERSION_PARAM = {"name": "version", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}}
_ACTIVATE_VERSION_PARAM = {**_VERSION_PARAM, "schema": {**_VERSION_PARAM["schema"], "minimum": 0},
                           "description": "a stored version, or 0: the rule file"}
_LIST_PARAM = {"name": "name", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$"}}


def _operator(operation_id: str, summary: str, responses: dict, **rest) -> dict:
    return {"operationId": operation_id, "summary": summary + " (operators only)",
            "responses": {**responses, "403": _FORBIDDEN, **_errors(*_AUTHENTICATED)}, **rest}


def _risk_paths() -> dict:
    body_errors = _errors(*_WITH_BODY)
    return {
        RULE_SETS_PATH: {
            "post": _operator(
                "pushRiskRuleSet",
                "Compile a rule set and store it as a new version, put in force unless `activate` is false. "
                "The same text again names the version stored first (200). Workers follow within "
                "PAYCELL_RISK_RELOAD_S",
                {"201": {"description": "stored as a new version", **_json(risk_rules.RuleSetView)},
                 "200": {"description": "this text is stored already: its version (activated if asked)",
                         **_json(risk_rules.RuleSetView)},
                 "422": _RULES_REFUSED, **body_errors},
                parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                             "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
                             "description": "a retry with the same key and body replays the first answer"}],
                requestBody={"required": True, **_json(risk_rules.RuleSetIn)}),
            "get": _operator("listRiskRuleSets", "Stored rule sets, newest first (without their source)",
                             {"200": {"description": "a page", **_json(risk_rules.RuleSetList)},
                              **_errors(400)}, parameters=_PAGE)},
        RULE_SETS_PATH + "/in-force": {
            "get": _operator("getRiskRuleSetInForce",
                             "The rule set in force (version 0: the rule file, no stored version in force)",
                             {"200": {"description": "in force", **_json(risk_rules.InForceView)}})},
        RULE_SETS_PATH + "/{version}": {
            "get": _operator("getRiskRuleSet", "One stored version: its source, who stored it, whether it is in "
                                               "force and who activated it when",
                             {"200": {"description": "the version", **_json(risk_rules.RuleSetView)},
                              "404": _error("`not_found`: no such version")},
                             parameters=[_VERSION_PARAM])},
        RULE_SETS_PATH + "/{version}/activate": {
            "post": _operator("activateRiskRuleSet", "Put a stored version in force (rolling back is activating "
                                                     "an older one; version 0 puts the rule file back, answered "
                                                     "as the in-force view); `activated` is false when it "
                                                     "already was",
                              {"200": {"description": "in force", "content": {"application/json": {"schema": {
                                  "oneOf": [_ref(risk_rules.RuleSetView), _ref(risk_rules.InForceView)]}}}},
                               "404": _error("`not_found`: no such version"),
                               "422": _error("`rules_invalid`: this version no longer compiles (a field "
                                             "changed); the one in force stays")},
                              parameters=[_ACTIVATE_VERSION_PARAM])},
        LISTS_PATH: {
            "get": _operator("listRiskLists", "Named lists by name, with their count of live entries",
                             {"200": {"description": "a page", **_json(risk_rules.ListsList)}, **_errors(400)},
                             parameters=_PAGE),
            "post": _operator("createRiskList", "Create a named list of users, instruments, IPs or countries",
                              {"201": {"description": "created", **_json(risk_rules.ListView)},
                               "200": {"description": "it exists with this kind", **_json(risk_rules.ListView)},
                               "409": _error("`list_exists`: a list of this name holds another kind"),
                               "422": _error("`list_name_invalid`, `list_kind_invalid`"), **body_errors},
                              requestBody={"required": True, **_json(risk_rules.ListIn)})},
        LISTS_PATH + "/{name}": {
            "get": _operator("getRiskList", "One list with a page of its entries, newest first",
                             {"200": {"description": "the list", **_json(risk_rules.ListView)},
                              "404": _error("`not_found`: no such list"), **_errors(400)},
                             parameters=[_LIST_PARAM, *_PAGE,
                                         {"name": "include_removed", "in": "query",
                                          "schema": {"type": "string", "enum": ["true", "false"]}}])},
        LISTS_PATH + "/{name}/entries": {
            "post": _operator("addRiskListEntries", "Add values (normalised per kind); a value already live is "
                                                    "left as it is",
                              {"200": {"description": "added", **_json(risk_rules.EntriesAdded)},
                               "404": _error("`not_found`: no such list"),
                               "422": _error("`list_value_invalid` (field `values[i]`), `list_values_too_many`, "
                                             "`list_values_invalid`, `note_too_long`, `risk_lists_full`"), **body_errors},
                              parameters=[_LIST_PARAM],
                              requestBody={"required": True, **_json(risk_rules.EntriesIn)})},
        LISTS_PATH + "/{name}/entries/{value}": {
            "delete": _operator("removeRiskListEntry", "Remove a value (again: the same answer)",
                                {"200": {"description": "the removed entry", **_json(risk_rules.EntryView)},
                                 "404": _error("`not_found`: the list never held the value, or no such list")},
                                parameters=[_LIST_PARAM, {"name": "value", "in": "path", "required": True,
                                                          "schema": {"type": "string"}}])},
    }


_LOCATION = {"Location": {"required": True, "description": "the payment's URL", "schema": {"type": "string"}}}
_TO_PAYMENT = {"GetPayment": {"operationId": "getPayment",
                              "parameters": {"payment_id": "$response.body#/payment_id"}}}


def _reviews() -> dict:
    """The operators' review queue (paycell/http/reviews.py): every route answers a token without
    the operator role 403 `forbidden` before it reads anything."""
    forbidden = _error("`forbidden`: the token lacks the operator role; `review_own_payment`: the item is "
                       "about the operator's own payment")
    review_id = [{"name": "review_id", "in": "path", "required": True,
                  "schema": {"type": "string", "format": "uuid"}}]
    missing = _error("`not_found`: no such review")
    conflict = _error("`review_claimed`: another operator's claim has not lapsed; `review_resolved`: the item "
                      "was resolved already (a resolution is final)")

    def resolution(operation_id: str, summary: str) -> dict:
        return {"post": {
            "operationId": operation_id, "summary": summary, "parameters": review_id,
            "requestBody": {"required": False, **_json(schemas.ResolveIn)},
            "responses": {"200": {"description": "the resolved item", **_json(schemas.ReviewView)},
                          "403": forbidden, "404": missing, "409": conflict,
                          **_errors(*_AUTHENTICATED, *_WITH_BODY)}}}

    return {
        REVIEWS_PATH: {"get": {
            "operationId": "listReviews",
            "summary": "Operators: review items in a state (default open), oldest first",
            "parameters": [{"name": "state", "in": "query",
                            "schema": {"enum": ["open", "claimed", "approved", "declined", "expired"]}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                       "maximum": 100}},
                           {"name": "starting_after", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "a page", **_json(schemas.ReviewList)}, "403": forbidden,
                          **_errors(*_AUTHENTICATED, 400)}}},
        REVIEWS_PATH + "/{review_id}": {"get": {
            "operationId": "getReview",
            "summary": "Operators: a review item, its payment and the payment's full event history",
            "parameters": review_id,
            "responses": {"200": {"description": "the item", **_json(schemas.ReviewDetail)}, "403": forbidden,
                          "404": missing, **_errors(*_AUTHENTICATED)}}},
        REVIEWS_PATH + "/{review_id}/claim": {"post": {
            "operationId": "claimReview",
            "summary": "Operators: claim an item (again: renews one's own claim)", "parameters": review_id,
            "responses": {"200": {"description": "the claimed item", **_json(schemas.ReviewView)},
                          "403": forbidden, "404": missing, "409": conflict, **_errors(*_AUTHENTICATED)}}},
        REVIEWS_PATH + "/{review_id}/approve": resolution(
            "approveReview", "Operators: approve an item; its payment continues as an allowed one"),
        REVIEWS_PATH + "/{review_id}/decline": resolution(
            "declineReview", "Operators: decline an item; its payment fails and a pay-out's reserve is released"),
    }


def _schedules() -> dict:
    """The scheduled-payment routes (paycell/http/schedules.py)."""
    schedule_id = {"name": "schedule_id", "in": "path", "required": True, "schema": {"type": "string"}}
    refused = _error("`recurrence_invalid` (the rule does not parse, or could leave periods without an "
                     "occurrence: the message says where), `recurrence_too_frequent` (below "
                     "PAYCELL_SCHEDULE_INTERVAL_S_MIN), `recurrence_ended`, `time_zone_invalid`, `start_invalid`, "
                     "`until_invalid`, `end_conflict`, or the payment's own refusals (amount, currency, accounts); "
                     "`idempotency_key_reused`: the schedule_id came with another body")
    found = {"200": {"description": "the scheduled payment", **_json(schemas.ScheduleView)}}
    links = {name: {"operationId": op, "parameters": {"schedule_id": "$response.body#/schedule_id"}}
             for name, op in (("GetScheduledPayment", "getScheduledPayment"),
                              ("ChangeScheduledPayment", "changeScheduledPayment"),
                              ("CancelScheduledPayment", "cancelScheduledPayment"))}
    return {
        SCHEDULES_PATH: {
            "post": {"operationId": "createScheduledPayment",
                     "summary": "Schedule a pay-in, pay-out or transfer on a recurrence (schedule_id is the "
                                "idempotency key)",
                     "requestBody": {"required": True, **_json(schemas.ScheduleIn)},
                     "responses": {"201": {"description": "scheduled, or the replay of the first answer",
                                           "links": links, **_json(schemas.ScheduleView)},
                                   "422": refused, **_errors(*_AUTHENTICATED, *_WITH_BODY, 403)}},
            "get": {"operationId": "listScheduledPayments", "summary": "The caller's scheduled payments, newest first",
                    "parameters": _PAGE,
                    "responses": {"200": {"description": "a page", **_json(schemas.ScheduleList)},
                                  **_errors(*_AUTHENTICATED, 400)}}},
        SCHEDULES_PATH + "/{schedule_id}": {
            "get": {"operationId": "getScheduledPayment",
                    "summary": "One of the caller's scheduled payments: status, next five occurrences, last runs",
                    "parameters": [schedule_id], "responses": {**found, **_errors(*_AUTHENTICATED, 404)}},
            "put": {"operationId": "changeScheduledPayment",
                    "summary": "Change amount, recurrence or end; pause (status paused) or resume (active)",
                    "parameters": [schedule_id],
                    "requestBody": {"required": True, **_json(schemas.ScheduleUpdate)},
                    "responses": {**found, "409": _error("`schedule_cancelled`: a cancelled schedule cannot change"),
                                  "422": refused, **_errors(*_AUTHENTICATED, *_WITH_BODY, 404)}},
            "delete": {"operationId": "cancelScheduledPayment",
                       "summary": "Cancel: no occurrence runs again; past runs and their payments stay. Again: "
                                  "the same answer",
                       "parameters": [schedule_id], "responses": {**found, **_errors(*_AUTHENTICATED, 404)}}},
    }


def _reversals() -> dict:
    """The operators' reversals of a payment (paycell/http/reversals.py): 403 `forbidden` for a token
    without the operator role, before anything is read."""
    payment_id = {"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    missing = _error("`not_found`: no such payment of that user")
    return {REVERSALS_PATH: {
        "post": _operator(
            "reversePayment",
            "Reverse (part of) a completed payment: a refund of a pay-in, the recall of a pay-out (whole). "
            "Recorded at once (status requested) and carried out at the payment's PSP by a worker; a new "
            "ledger transaction compensates it, never an edit",
            {"201": {"description": "recorded", **_json(schemas.ReversalView)},
             "200": {"description": "this Idempotency-Key named this reversal before, with the same body",
                     **_json(schemas.ReversalView)},
             "404": missing,
             "409": _error("`payment_not_reversible`: only a completed pay-in or pay-out can be reversed"),
             "422": _error("`amount_exceeds_remaining` (more than the payment's amount less its reversals), "
                           "`currency_mismatch`, `reversal_not_supported` (part of a pay-out), "
                           "`idempotency_key_reused`, or an invalid amount or currency"),
             **_errors(*_WITH_BODY)},
            parameters=[payment_id, {"name": "Idempotency-Key", "in": "header", "required": True,
                                     "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"}}],
            requestBody={"required": True, **_json(schemas.ReversalIn)}),
        "get": _operator(
            "listReversals", "A payment's reversals, oldest first",
            {"200": {"description": "the reversals", **_json(schemas.ReversalList)}, "404": missing,
             **_errors(400)},
            parameters=[payment_id, {"name": "user_id", "in": "query", "required": True,
                                     "schema": {"type": "string", "minLength": 1}}]),
    }}


def _reconcile() -> dict:
    """The operators' reconciliation routes (paycell/http/reconcile.py): 403 `forbidden` for a token
    without the operator role, before anything is read."""
    forbidden = _error("`forbidden`: the token lacks the operator role")
    enqueued = {"description": "enqueued for a worker", **_json(reconcile.Enqueued)}
    return {
        reconcile.PATH + "/catalogue": {"get": {
            "operationId": "getReconciliationCatalogue",
            "summary": "Operators: every inconsistency kind, whether it is fixed automatically, and its fix",
            "responses": {"200": {"description": "the catalogue", **_json(reconcile.CatalogueView)},
                          "403": forbidden, **_errors(*_AUTHENTICATED)}}},
        reconcile.PATH + "/runs": {"get": {
            "operationId": "listReconciliationRuns",
            "summary": "Operators: recent reconciliation runs' reports, newest first",
            "parameters": [{"name": "kind", "in": "query", "schema": {"enum": ["internal", "settlement"]}},
                           {"name": "connector", "in": "query", "schema": {"type": "string"}},
                           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                       "maximum": 100}}],
            "responses": {"200": {"description": "the runs", **_json(reconcile.RunList)}, "403": forbidden,
                          **_errors(*_AUTHENTICATED, 400)}}},
        reconcile.PATH + "/runs/{run_id}": {"get": {
            "operationId": "getReconciliationRun",
            "summary": "Operators: a run's report (counts per kind, auto-fixed, queued, totals per currency) "
                       "and its breaks",
            "parameters": [{"name": "run_id", "in": "path", "required": True,
                            "schema": {"type": "string", "format": "uuid"}}],
            "responses": {"200": {"description": "the report", **_json(report.RunView)}, "403": forbidden,
                          "404": _error("`not_found`: no such run"), **_errors(*_AUTHENTICATED)}}},
        reconcile.PATH + "/internal": {"post": {
            "operationId": "runInternalReconciliation",
            "summary": "Operators: run the internal reconciliation now",
            "responses": {"202": enqueued, "403": forbidden, **_errors(*_AUTHENTICATED)}}},
        reconcile.PATH + "/settlements": {"post": {
            "operationId": "runSettlementReconciliation",
            "summary": "Operators: fetch a connector's settlement report of a day and reconcile it",
            "requestBody": {"required": True, **_json(reconcile.SettlementIn)},
            "responses": {"202": enqueued, "403": forbidden,
                          "422": _error("`unknown_connector`: the connector has no settlement report format"),
                          **_errors(*_AUTHENTICATED, *_WITH_BODY)}}},
    }


def document() -> dict:
    _, components = msgspec.json.schema_components(_STRUCTS, ref_template="#/components/schemas/{name}")
    uuid_param = {"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    page_params = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                   {"name": "starting_after", "in": "query", "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "paycell", "version": "1",
                 "description": "Wallets, a double-entry ledger, pay-in and pay-out through pluggable PSPs. "
                                "Amounts are decimal strings in the currency's minor-unit exponent."},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
        "paths": {
            PAYMENTS_PATH: {
                "post": {
                    "operationId": "createPayment",
                    "summary": "Submit a pay-in, pay-out or transfer (payment_id is the idempotency key)",
                    "parameters": [{"name": "Prefer", "in": "header", "required": False,
                                    "schema": {"type": "string", "pattern": "^wait=[0-9]{1,12}$"},
                                    "description": "wait=N (N <= 10): answer 201 once the payment is done"}],
                    "requestBody": {"required": True, **_json(schemas.PaymentIn)},
                    "responses": {"201": {"description": "done within the wait", "headers": _LOCATION,
                                          "links": _TO_PAYMENT, **_json(schemas.PaymentView)},
                                  "202": {"description": "accepted, or the replay of the first answer",
                                          "headers": _LOCATION, "links": _TO_PAYMENT,
                                          **_json(schemas.PaymentView)},
                                  **_errors(*_AUTHENTICATED, *_WITH_BODY, 403, 409, 422, 429)}},
                "get": {
                    "operationId": "listPayments",
                    "summary": "The caller's payments, newest first",
                    "parameters": page_params,
                    "responses": {"200": {"description": "a page", **_json(schemas.PaymentList)},
                                  **_errors(*_AUTHENTICATED, 400)}},
            },
            PAYMENTS_PATH + "/{payment_id}": {
                "get": {"operationId": "getPayment",
                        "summary": "One of the caller's payments with its orders and event history",
                        "parameters": [uuid_param],
                        "responses": {"200": {"description": "the payment", **_json(schemas.PaymentDetail)},
                                      **_errors(*_AUTHENTICATED, 404)}}},
            WALLET_PATH: {
                "get": {"operationId": "getWallet",
                        "summary": "The caller's balances per currency (available, reserved)",
                        "responses": {"200": {"description": "the wallet", **_json(schemas.WalletView)},
                                      **_errors(*_AUTHENTICATED)}}},
            INSTRUMENTS_PATH: {
                "post": {
                    "operationId": "attachInstrument",
                    "summary": "Attach a PSP token to the caller (idempotent: the same token on the same "
                               "connector answers the instrument attached first)",
                    "requestBody": {"required": True, **_json(schemas.InstrumentIn)},
                    "responses": {"201": {"description": "attached", **_json(schemas.InstrumentView)},
                                  "200": {"description": "already attached: that instrument",
                                          **_json(schemas.InstrumentView)},
                                  **_errors(*_AUTHENTICATED, *_WITH_BODY, 422)}},
                "get": {
                    "operationId": "listInstruments",
                    "summary": "The caller's attached instruments, newest first",
                    "parameters": page_params,
                    "responses": {"200": {"description": "a page", **_json(schemas.InstrumentList)},
                                  **_errors(*_AUTHENTICATED, 400)}},
            },
            INSTRUMENTS_PATH + "/{instrument_id}": {
                "delete": {
                    "operationId": "detachInstrument",
                    "summary": "Detach one of the caller's instruments (past payments keep it); again: the "
                               "same answer. Another user's instrument is 404",
                    "parameters": [{"name": "instrument_id", "in": "path", "required": True,
                                    "schema": {"type": "string"}, "description": "inst_ + 32 hex digits"}],
                    "responses": {"200": {"description": "the detached instrument", **_json(schemas.InstrumentView)},
                                  **_errors(*_AUTHENTICATED, 404)}}},
            **_schedules(),
            **_risk_paths(),
            **_reviews(),
            **_reconcile(),
            **_reversals(),
            WEBHOOK_PATH: _WEBHOOK,
            RETURN_PATH: _RETURN,
            "/health": {"get": {"summary": "Liveness: the process serves HTTP (no I/O)", "security": [],
                                "responses": {"200": {"description": "alive", "content": {"application/json": {
                                    "schema": {"type": "object", "required": ["ok"],
                                               "properties": {"ok": {"const": True}}}}}}}}},
            "/ready": {"get": {"summary": "Readiness: Postgres and Redis answered (checked at most once per "
                                          "PAYCELL_READINESS_CACHE_S)", "security": [],
                               "responses": {"200": {"description": "ready", **_json(ReadyView)},
                                             **_errors(503)}}},
            "/openapi.json": {"get": {"summary": "This description", "security": [],
                                      "responses": {"200": {"description": "the OpenAPI document",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
    }
