"""The operator API of the risk configuration: rule sets (versioned, one in force, rollback by
activating an older one) and named lists. Every handler calls require_operator first: a user's
token gets 403 `forbidden`. Changes go through paycell.rules.changes inside one transaction, so a
refused one writes nothing; workers pick them up within PAYCELL_RISK_RELOAD_S (RulesInForce).

POST /risk/rule-sets takes an optional Idempotency-Key (as Stripe's): the first answer is stored
with the rule set, in its transaction, in the idempotency_key table the payments use (scoped to
the operator, prefixed so it never meets a payment_id, expired by the same retention job); a
retry with the same key and body replays it, with another body is 422 idempotency_key_reused.
Without a key, pushing the same text again is harmless anyway: it names the version stored first.
"""
from __future__ import annotations

import hashlib
import re

import msgspec
from aiohttp import web

from paycell import checkout
from paycell.errors import IdempotencyConflict, InvalidRequest, NotFound
from paycell.http.auth import NO_ROLES, OPERATOR, require_operator
from paycell.http.cursors import check_query_names, decode_position, encode_position, limit_of
from paycell.http.errors import json_response
from paycell.http.payments import check_utf8, require_json
from paycell.http.state import CURSOR_KEY, POOL, ROLES, SETTINGS
from paycell.rules import changes, list_values
from paycell.rules.in_force import rules_file_text
from paycell.store import idempotency
from paycell.store import risk_rules as store

RULE_SETS_PATH = "/risk/rule-sets"
LISTS_PATH = "/risk/lists"
PUSH_ROUTE = "risk_rule_set_push"
PUSH_BODY_BYTES_MAX = 512 * 1024  # a 64 KiB source, JSON-escaped (a control character is 6 bytes)
ACTIVATIONS_SHOWN_MAX = 50
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
IDEMPOTENCY_PREFIX = "risk.rule_sets:"
_VERSION = "{version:[0-9]{1,18}}"


# -- bodies and answers -------------------------------------------------------------------------

class RuleSetIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /risk/rule-sets: the rule text, a note, and whether to put it in force (default)."""
    source: str
    note: str = ""
    activate: bool = True


class ActivationView(msgspec.Struct, kw_only=True):
    activated_by: str
    activated_at: str


class RuleSetView(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="object", tag="risk_rule_set"):
    version: int
    sha256: str  # hex, of the source's UTF-8
    note: str
    created_by: str
    created_at: str
    source_bytes: int
    in_force: bool
    source: str | None = None  # one version's view, not the list's
    activations: list[ActivationView] | None = None  # one version's view: who put it in force, newest first
    created: bool | None = None  # a push's answer: False when the same text was stored before
    activated: bool | None = None  # a push's or activation's answer: put in force by this request


class RuleSetList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[RuleSetView]
    has_more: bool
    next_cursor: str | None


class InForceView(msgspec.Struct, kw_only=True, tag_field="object", tag="risk_rule_set_in_force"):
    """The rule set the database has in force (workers follow within PAYCELL_RISK_RELOAD_S).
    Version 0 is the rule file (PAYCELL_RISK_RULES_FILE, else paycell's default file): no rule set
    was activated, or version 0 was activated since."""
    version: int
    default: bool
    sha256: str
    source: str
    activated_by: str | None
    activated_at: str | None


class ListIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /risk/lists: a name (`[a-z][a-z0-9_]{0,62}`) and what it holds."""
    name: str
    kind: str  # user, instrument, ip, country


class ListView(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="object", tag="risk_list"):
    name: str
    kind: str
    created_by: str
    created_at: str
    live_entries: int
    entries: EntryList | None = None  # one list's view: a page of its entries, newest first


class EntryView(msgspec.Struct, kw_only=True, tag_field="object", tag="risk_list_entry"):
    entry_id: int
    list_name: str
    value: str
    note: str
    status: str  # live or removed
    added_by: str
    added_at: str
    removed_by: str | None
    removed_at: str | None


class EntryList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[EntryView]
    has_more: bool
    next_cursor: str | None


class ListsList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ListView]
    has_more: bool
    next_cursor: str | None


class EntriesIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """POST /risk/lists/{name}/entries: values to add (at most 500); one already live is fine."""
    values: list[str]
    note: str = ""


class EntriesAdded(msgspec.Struct, kw_only=True, tag_field="object", tag="risk_list_entries_added"):
    list_name: str
    added: list[str]  # normalised, added by this request
    unchanged: list[str]  # normalised, live already


STRUCTS = (RuleSetIn, RuleSetView, RuleSetList, InForceView, ListIn, ListView, ListsList, EntryView, EntryList,
           EntriesIn, EntriesAdded)


def _iso(ts) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def rule_set_view(row, **extra) -> RuleSetView:
    return RuleSetView(version=row["version"], sha256=bytes(row["sha256"]).hex(), note=row["note"],
                       created_by=row["created_by"], created_at=_iso(row["created_at"]),
                       source_bytes=row["source_bytes"], in_force=row["in_force"], **extra)


def entry_view(row) -> EntryView:
    return EntryView(entry_id=row["entry_id"], list_name=row["list_name"], value=row["value"], note=row["note"],
                     status="live" if row["removed_at"] is None else "removed", added_by=row["added_by"],
                     added_at=_iso(row["added_at"]), removed_by=row["removed_by"], removed_at=_iso(row["removed_at"]))


def list_view(row, entries: EntryList | None = None) -> ListView:
    return ListView(name=row["name"], kind=row["kind"], created_by=row["created_by"],
                    created_at=_iso(row["created_at"]), live_entries=row["live_entries"], entries=entries)


def routes() -> list[web.RouteDef]:
    return [
        web.post(RULE_SETS_PATH, push_rule_set, name=PUSH_ROUTE),
        web.get(RULE_SETS_PATH, list_rule_sets),
        web.get(RULE_SETS_PATH + "/in-force", get_in_force),
        web.get(f"{RULE_SETS_PATH}/{_VERSION}", get_rule_set),
        web.post(f"{RULE_SETS_PATH}/{_VERSION}/activate", activate_rule_set),
        web.get(LISTS_PATH, list_lists),
        web.post(LISTS_PATH, create_list),
        web.get(LISTS_PATH + "/{name}", get_list),
        web.post(LISTS_PATH + "/{name}/entries", add_entries),
        web.delete(LISTS_PATH + "/{name}/entries/{value}", remove_entry),
    ]


def body_cap_middleware():
    """A rule set may outgrow the API's body cap: an operator's push gets its own (in place before
    the body is read; a user's token keeps the small one and gets its 403)."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        if request.match_info.route.name == PUSH_ROUTE and OPERATOR in request.get(ROLES, NO_ROLES):
            request = request.clone(client_max_size=PUSH_BODY_BYTES_MAX)
        return await handler(request)
    return middleware


async def _body(request: web.Request, struct):
    require_json(request)
    raw = await request.read()
    check_utf8(raw)
    return checkout.decode(raw, struct)


def _page(request: web.Request, caller: str, scope: str, *,
          flags: tuple[str, ...] = ()) -> tuple[int, str | None, dict]:
    """(limit, the position after which the page starts, the boolean flags given)."""
    check_query_names(request.query, ("limit", "starting_after", *flags))
    limit = limit_of(request.query)
    values = {}
    for flag in flags:
        text = request.query.get(flag, "false")
        if text not in ("true", "false"):
            raise InvalidRequest(f"{flag} must be true or false", field=flag)
        values[flag] = text == "true"
    cursor = request.query.get("starting_after")
    position = None if cursor is None else decode_position(request.app[CURSOR_KEY], caller, scope, cursor)
    return limit, position, values


def _next(request: web.Request, caller: str, scope: str, has_more: bool, position) -> str | None:
    return encode_position(request.app[CURSOR_KEY], caller, scope, str(position)) if has_more else None


# -- rule sets --------------------------------------------------------------------------------

async def push_rule_set(request: web.Request) -> web.Response:
    """Compile, store and (by default) activate a rule set. 201 with the new version; 200 when the
    same text is stored already (its version, activated if asked); 422 rules_invalid /
    rules_syntax with every problem, nothing written."""
    who = require_operator(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters", field="Idempotency-Key")
    body = await _body(request, RuleSetIn)
    request_sha256 = hashlib.sha256(msgspec.json.encode(body)).digest()
    stored_key = None if key is None else IDEMPOTENCY_PREFIX + key
    async with request.app[POOL].acquire() as conn:
        if stored_key is not None:
            replay = await _replay(conn, who, stored_key, request_sha256)
            if replay is not None:
                return replay
        try:
            async with conn.transaction():
                pushed = await changes.push(conn, body.source, note=body.note,
                                            activate=body.activate, by=who)
                row = await store.rule_set(conn, pushed.version)
                answer = msgspec.json.encode(rule_set_view(row, created=pushed.created, activated=pushed.activated))
                status = 201 if pushed.created else 200
                if stored_key is not None and not await idempotency.claim_completed(
                        conn, user_id=who, key=stored_key, request_sha256=request_sha256, status=status, body=answer):
                    raise _KeyTaken()
        except _KeyTaken:  # a concurrent request with this key committed first: answer as it did
            replay = await _replay(conn, who, stored_key, request_sha256)
            if replay is None:
                raise
            return replay
    return json_response(answer, status, {"Location": f"{RULE_SETS_PATH}/{pushed.version}"})


class _KeyTaken(Exception):
    """The Idempotency-Key was claimed by a concurrent push that committed first (rolls this one back)."""


async def _replay(conn, who: str, key: str, request_sha256: bytes) -> web.Response | None:
    stored = await idempotency.stored(conn, user_id=who, key=key)
    if stored is None:
        return None
    if stored.request_sha256 != request_sha256:
        raise IdempotencyConflict("this Idempotency-Key was used before with a different request",
                                  field="Idempotency-Key")
    version = msgspec.json.decode(stored.body)["version"]
    return json_response(stored.body, stored.status, {"Idempotent-Replayed": "true",
                                                      "Location": f"{RULE_SETS_PATH}/{version}"})


async def list_rule_sets(request: web.Request) -> web.Response:
    """Every stored version, newest first, a page at a time (no sources: GET one version for it)."""
    who = require_operator(request)
    limit, position, _ = _page(request, who, "risk_rule_sets")
    async with request.app[POOL].acquire() as conn:
        rows = await store.rule_sets(conn, limit=limit + 1, before=None if position is None else int(position))
    page, has_more = rows[:limit], len(rows) > limit
    return json_response(msgspec.json.encode(RuleSetList(
        data=[rule_set_view(r) for r in page], has_more=has_more,
        next_cursor=_next(request, who, "risk_rule_sets", has_more, page[-1]["version"] if page else None))))


async def get_rule_set(request: web.Request) -> web.Response:
    """One version: its source, who stored it and when, whether it is in force, who activated it."""
    require_operator(request)
    version = int(request.match_info["version"])
    async with request.app[POOL].acquire() as conn:
        row = await store.rule_set(conn, version)
        if row is None:
            raise NotFound(f"no rule set version {version}")
        activations = await store.activations(conn, version, limit=ACTIVATIONS_SHOWN_MAX)
    return json_response(msgspec.json.encode(rule_set_view(
        row, source=row["source"],
        activations=[ActivationView(activated_by=a["activated_by"], activated_at=_iso(a["activated_at"]))
                     for a in activations])))


async def get_in_force(request: web.Request) -> web.Response:
    """The rule set in force in the database (version 0: the rule file, none activated since)."""
    require_operator(request)
    async with request.app[POOL].acquire() as conn:
        row = await store.latest_activation(conn)
    return json_response(msgspec.json.encode(_in_force_view(request, row)))


def _in_force_view(request: web.Request, row) -> InForceView:
    if row is None or row["version"] is None:
        source = rules_file_text(request.app[SETTINGS])
        view = InForceView(version=0, default=True, sha256=store.sha256_of(source).hex(), source=source,
                           activated_by=None if row is None else row["activated_by"],
                           activated_at=None if row is None else _iso(row["activated_at"]))
    else:
        view = InForceView(version=row["version"], default=False, sha256=bytes(row["sha256"]).hex(),
                           source=row["source"], activated_by=row["activated_by"],
                           activated_at=_iso(row["activated_at"]))
    return view


async def activate_rule_set(request: web.Request) -> web.Response:
    """Put a stored version in force (a rollback when it is older; 0: back to the rule file, answered
    as GET in-force). 200 with the version (`activated` false when it already was); 404 for an
    unknown version."""
    who = require_operator(request)
    version = int(request.match_info["version"])
    async with request.app[POOL].acquire() as conn, conn.transaction():
        activated = await changes.activate(conn, version, by=who)
        if version == 0:  # the rule file: it has no stored version to show
            view = _in_force_view(request, await store.latest_activation(conn))
            return json_response(msgspec.json.encode(view))
        row = await store.rule_set(conn, version)
    return json_response(msgspec.json.encode(rule_set_view(row, activated=activated)))


# -- named lists --------------------------------------------------------------------------------

async def list_lists(request: web.Request) -> web.Response:
    """Every named list by name, with its count of live entries, a page at a time."""
    who = require_operator(request)
    limit, position, _ = _page(request, who, "risk_lists")
    async with request.app[POOL].acquire() as conn:
        rows = await store.lists(conn, limit=limit + 1, after=position)
    page, has_more = rows[:limit], len(rows) > limit
    return json_response(msgspec.json.encode(ListsList(
        data=[list_view(r) for r in page], has_more=has_more,
        next_cursor=_next(request, who, "risk_lists", has_more, page[-1]["name"] if page else None))))


async def create_list(request: web.Request) -> web.Response:
    """201 with the new list; 200 when it exists with this kind; 409 list_exists with another."""
    who = require_operator(request)
    body = await _body(request, ListIn)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row, created = await changes.create_list(conn, body.name, body.kind, by=who)
    return json_response(msgspec.json.encode(list_view(row)), 201 if created else 200,
                         {"Location": f"{LISTS_PATH}/{row['name']}"})


async def get_list(request: web.Request) -> web.Response:
    """One list with a page of its entries, newest first (`include_removed=true`: removed ones too)."""
    who = require_operator(request)
    name = request.match_info["name"]
    scope = f"risk_list.{name}" if list_values.LIST_NAME.fullmatch(name) else "risk_list"
    limit, position, flags = _page(request, who, scope, flags=("include_removed",))
    async with request.app[POOL].acquire() as conn:
        await changes.list_kind(conn, name)
        row = await store.get_list(conn, name)
        rows = await store.entries(conn, name, limit=limit + 1, before=None if position is None else int(position),
                                   include_removed=flags["include_removed"])
    page, has_more = rows[:limit], len(rows) > limit
    entries = EntryList(data=[entry_view(r) for r in page], has_more=has_more,
                        next_cursor=_next(request, who, scope, has_more, page[-1]["entry_id"] if page else None))
    return json_response(msgspec.json.encode(list_view(row, entries)))


async def add_entries(request: web.Request) -> web.Response:
    """Add values (normalised per the list's kind; 422 list_value_invalid naming `values[i]`, or
    list_values_too_many; risk_lists_full past PAYCELL_RISK_LIST_ENTRIES_MAX); a value already live is
    left as it is. Nothing is written on refusal."""
    who = require_operator(request)
    name = request.match_info["name"]
    body = await _body(request, EntriesIn)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        normalised, added = await changes.add_values(conn, name, body.values, note=body.note, by=who,
                                                     entries_max=request.app[SETTINGS].risk_list_entries_max)
    added_set = set(added)
    return json_response(msgspec.json.encode(EntriesAdded(
        list_name=name, added=added, unchanged=[v for v in normalised if v not in added_set])))


async def remove_entry(request: web.Request) -> web.Response:
    """Remove a value (spelt any way its kind allows); again: the same answer; 404 when the list
    never held it."""
    who = require_operator(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await changes.remove_value(conn, request.match_info["name"], request.match_info["value"], by=who)
    return json_response(msgspec.json.encode(entry_view(row)))

