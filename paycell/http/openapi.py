"""The API's OpenAPI 3.1 description, generated from the same msgspec Structs the handlers use,
so it cannot drift from what the API accepts and answers. Served at GET /openapi.json."""
from __future__ import annotations

import msgspec

from paycell import schemas
from paycell.http.errors import ErrorBody
from paycell.http.instruments import INSTRUMENTS_PATH
from paycell.http.payments import PAYMENTS_PATH, WALLET_PATH


_STRUCTS = (schemas.PaymentIn, schemas.PaymentView, schemas.PaymentDetail, schemas.PaymentList,
            schemas.WalletView, schemas.InstrumentIn, schemas.InstrumentView, schemas.InstrumentList, ErrorBody)


def _ref(struct) -> dict:
    return {"$ref": f"#/components/schemas/{struct.__name__}"}


def _json(struct) -> dict:
    return {"content": {"application/json": {"schema": _ref(struct)}}}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": "an error; `error.code` is stable", **_json(ErrorBody)} for s in statuses}


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
                    "summary": "Submit a pay-in, pay-out or transfer (payment_id is the idempotency key)",
                    "parameters": [{"name": "Prefer", "in": "header", "required": False,
                                    "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
                                    "description": "wait=N (N <= 10): answer 201 once the payment is done"}],
                    "requestBody": {"required": True, **_json(schemas.PaymentIn)},
                    "responses": {"201": {"description": "done within the wait", **_json(schemas.PaymentView)},
                                  "202": {"description": "accepted, or the replay of the first answer",
                                          **_json(schemas.PaymentView)},
                                  **_errors(400, 401, 403, 409, 413, 415, 422, 503)}},
                "get": {
                    "summary": "The caller's payments, newest first",
                    "parameters": page_params,
                    "responses": {"200": {"description": "a page", **_json(schemas.PaymentList)},
                                  **_errors(400, 401)}},
            },
            PAYMENTS_PATH + "/{payment_id}": {
                "get": {"summary": "One of the caller's payments with its orders and event history",
                        "parameters": [uuid_param],
                        "responses": {"200": {"description": "the payment", **_json(schemas.PaymentDetail)},
                                      **_errors(401, 404)}}},
            WALLET_PATH: {
                "get": {"summary": "The caller's balances per currency (available, reserved)",
                        "responses": {"200": {"description": "the wallet", **_json(schemas.WalletView)},
                                      **_errors(401)}}},
            INSTRUMENTS_PATH: {
                "post": {
                    "summary": "Attach a PSP token to the caller (idempotent: the same token on the same "
                               "connector answers the instrument attached first)",
                    "requestBody": {"required": True, **_json(schemas.InstrumentIn)},
                    "responses": {"201": {"description": "attached", **_json(schemas.InstrumentView)},
                                  "200": {"description": "already attached: that instrument",
                                          **_json(schemas.InstrumentView)},
                                  **_errors(400, 401, 413, 415, 422, 503)}},
                "get": {
                    "summary": "The caller's attached instruments, newest first",
                    "parameters": page_params,
                    "responses": {"200": {"description": "a page", **_json(schemas.InstrumentList)},
                                  **_errors(400, 401, 503)}},
            },
            INSTRUMENTS_PATH + "/{instrument_id}": {
                "delete": {
                    "summary": "Detach one of the caller's instruments (past payments keep it); again: the "
                               "same answer. Another user's instrument is 404",
                    "parameters": [{"name": "instrument_id", "in": "path", "required": True,
                                    "schema": {"type": "string"}, "description": "inst_ + 32 hex digits"}],
                    "responses": {"200": {"description": "the detached instrument", **_json(schemas.InstrumentView)},
                                  **_errors(401, 404, 503)}}},
            "/health": {"get": {"summary": "Liveness", "security": [],
                                "responses": {"200": {"description": "the database answers"}}}},
        },
    }
