"""Bullhorn REST API simulator: session login, Lucene search over three entities, start/count.

The vendor contract reproduced here (Bullhorn REST API reference,
https://bullhorn.github.io/rest-api-docs/ and "Getting Started with REST",
https://bullhorn.github.io/Getting-Started-with-REST/):

* Login: ``GET|POST /rest-services/login?version=*&access_token=T`` answers
  ``{"BhRestToken": ..., "restUrl": ".../rest-services/{corpToken}/"}``. Every later call goes
  to ``restUrl`` with the session in a ``BhRestToken`` header (or query parameter). A session
  that expired answers 401 ``errors.authentication.invalidRestToken``; ``expire_sessions()``
  makes every current session expire, ``reject_sessions = True`` refuses even fresh ones. The
  OAuth dance that yields the access token is not simulated: the simulator's ``token`` is the
  access token, and it can log in any number of times (``logins`` counts them).
* Search: ``POST {restUrl}search/{ClientContact|Candidate|Lead}?fields=...&start=S&count=C``
  with body ``{"query": "<Lucene>"}`` (``GET`` with ``query=`` works too). ``fields`` is
  required and checked against the entity's fields; ``clientCorporation(name)`` selects
  sub-fields of a to-one association. The answer is ``{"total", "start", "count", "data"}``;
  ``count`` defaults to 20 and is capped at 500.
* Match: Lucene as Bullhorn's ``search`` runs it ("performed against a Lucene index",
  bullhorn/rest-api-docs ``_search.md``, which links Lucene's classic query parser syntax):
  every field value is analysed into lower-cased alphanumeric tokens, so ``+44 2079460958``
  is indexed as ``44``, ``2079460958`` and ``phone:2079460958`` finds it, whatever the
  country. A quoted value is a phrase (its tokens in order, adjacent: ``phone:"(415)
  555-0100"`` finds ``415.555.0100`` and ``+1 415 555 0100`` but not ``+14155550100``); an
  unquoted value matches any of its tokens (``phone:415-555-0100`` finds everyone with
  ``555`` in the phone); ``*``/``?`` wildcards match single tokens; ``AND``, ``OR``, ``NOT``,
  ``&&``/``||``, parentheses and ``field:(a b)`` groups; clauses side by side are ORed
  (Lucene's default operator, as in the doc's ``id:10125 10126 ...``) and a clause without
  a field searches every field. Unquoted ``+``, ``(`` etc. inside a value are a parse
  error (400). So a search proves only that the number's tokens occur, never that it is
  the caller's number: the connector must verify.
* Placement: ``search/Placement`` on ``candidate.id`` / ``jobOrder.clientContact.id`` /
  ``status`` (seeded from a Candidate's ``placements``).
* Dates: ``dateAdded`` / ``dateLastModified`` in epoch milliseconds.
* Rate limit: 429 whose message says to wait one second and retry, with no rate-limit headers
  (Bullhorn's own SDK sleeps 1 s and retries: supportforums.bullhorn.com viewtopic t=34864).

Seed records map to an entity by ``type`` (``Candidate``, ``Lead``, anything else is a
``ClientContact``); their ids are kept as they are (as integers when numeric) so tests can
compare them; ``phone``/``phones`` fill ``phone``, ``mobile``, ``phone2``, ``phone3`` in order;
a seed ``isDeleted: true`` marks a soft-deleted record, which Bullhorn keeps in its index.
"""

from __future__ import annotations

import fnmatch
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmsim.base import SimRequest, SimResponse, Simulator, WindowState, phones_of, seed_date

CORP_TOKEN = "sim001"
ENTITIES = ("ClientContact", "Candidate", "Lead")
PHONE_FIELDS = ("phone", "mobile", "phone2", "phone3")
DEFAULT_COUNT, MAX_COUNT = 20, 500
_COMMON_FIELDS = (
    "id",
    "name",
    "firstName",
    "lastName",
    *PHONE_FIELDS,
    "email",
    "occupation",
    "dateAdded",
    "dateLastModified",
    "isDeleted",
    "status",
)
FIELDS = {
    "ClientContact": (*_COMMON_FIELDS, "clientCorporation"),
    "Candidate": (*_COMMON_FIELDS, "companyName", "workPhone"),
    "Lead": (*_COMMON_FIELDS, "companyName"),
}
FIELDS["JobOrder"] = ("id", "title", "isOpen", "clientContact")
# Placement: one Candidate in one JobOrder (bullhorn/rest-api-docs entityref/_placement.md);
# ``status`` defaults to "Placed".
FIELDS["Placement"] = ("id", "status", "dateBegin", "dateEnd", "jobOrder", "candidate")
TO_ONE = {"clientCorporation", "clientContact", "jobOrder", "candidate"}


def _epoch_ms(value: object) -> int | None:
    when = seed_date(value)
    return None if when is None else int(when.timestamp() * 1000)


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.partition(" ")
    return first, last


def to_record(seed: Mapping[str, Any], index: int) -> tuple[str, dict[str, Any]]:
    """A seed contact as (entity, Bullhorn record)."""
    kind = str(seed.get("type") or "")
    entity = kind if kind in ("Candidate", "Lead") else "ClientContact"
    raw_id = seed.get("id", index + 1)
    rid: Any = int(raw_id) if isinstance(raw_id, str) and raw_id.isdigit() else raw_id
    name = str(seed.get("name") or "")
    first, last = _split_name(name)
    record: dict[str, Any] = {
        "id": rid,
        "name": name,
        "firstName": first,
        "lastName": last,
        "email": seed.get("email"),
        "occupation": seed.get("title"),
        "dateAdded": _epoch_ms(seed.get("createdDate")),
        "dateLastModified": _epoch_ms(seed.get("mostRecentActivityDate")),
        "isDeleted": bool(seed.get("isDeleted", False)),
        # Bullhorn's status picklists: "Active" by default; a seed may set "Archive"
        # (ClientContact), "Archived" (Candidate) or "Converted" (Lead).
        "status": seed.get("status") or ("New" if entity == "Lead" else "Active"),
    }
    phones = phones_of(seed)
    for field_name, phone in zip(PHONE_FIELDS, [*phones, None, None, None, None], strict=False):
        record[field_name] = phone
    if entity == "Candidate":
        record["workPhone"] = seed.get("workPhone")
    company = seed.get("company")
    if entity == "ClientContact":
        record["clientCorporation"] = {"id": 1000 + index, "name": company} if company else None
    else:
        record["companyName"] = company
    return entity, record


# ----- a Lucene subset, with Lucene's analysis -------------------------------------------------
class LuceneError(ValueError):
    pass


_WORD = re.compile(r"[^\W_]+")


def analyse(value: object) -> list[str]:
    """A field value or query text as Lucene's standard analyser indexes it: lower-cased
    alphanumeric tokens, every other character a separator. ``(415) 555-0100`` is
    ``415 555 0100``; ``+14155550100`` is ``14155550100``; a boolean is ``true``/``1`` or
    ``false``/``0`` (Bullhorn's own example queries ``isDeleted:0``)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true", "1"] if value else ["false", "0"]
    return _WORD.findall(str(value).lower())


def _values(record: Mapping[str, Any], field_name: str | None) -> list[Any]:
    """The values a term searches: one field, or every field (Lucene's default field, which
    takes a clause written without ``field:``)."""
    if field_name is not None:
        return [record.get(field_name)]
    return [v for k, v in record.items() if not isinstance(v, Mapping | list) and k != "_score"]


@dataclass
class Term:
    """``field:value`` (``field`` None: the default field). ``phrase``: the value was quoted,
    so its tokens must appear in that order, next to each other; unquoted, any of its
    tokens is enough (the classic query parser ORs the tokens of one unquoted value, so
    ``phone:415-555-0100`` finds every record with ``555`` in its phone). A value with
    ``*`` or ``?`` is a wildcard matched against each token, not analysed."""

    field: str | None
    value: str
    phrase: bool = False

    def matches(self, record: Mapping[str, Any]) -> bool:
        wildcard = not self.phrase and ("*" in self.value or "?" in self.value)
        wanted = analyse(self.value)
        for stored in _values(record, self.field):
            tokens = analyse(stored)
            if wildcard:
                pattern = self.value.lower()
                if any(fnmatch.fnmatchcase(t, pattern) for t in tokens):
                    return True
            elif not self.phrase:
                if any(w in tokens for w in wanted):
                    return True
            elif wanted:
                n = len(wanted)
                if any(tokens[i : i + n] == wanted for i in range(len(tokens) - n + 1)):
                    return True
        return False


@dataclass
class Op:
    kind: str  # "AND" | "OR" | "NOT"
    args: list[Any]

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.kind == "NOT":
            return not self.args[0].matches(record)
        results = (arg.matches(record) for arg in self.args)
        return all(results) if self.kind == "AND" else any(results)


_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?:(?P<field>[A-Za-z_][\w.]*):)?"
    r'(?:"(?P<quoted>(?:\\.|[^"\\])*)"|(?P<bare>[^\s()"]+)|(?P<group>(?=\())))'
)
# Lucene's syntax characters (+ - && || ! ( ) { } [ ] ^ " ~ : \ /) must be escaped or the
# value quoted; ``-`` inside a word is not an operator, ``*`` and ``?`` are wildcards.
_BARE_OK = re.compile(r"[\w.@*?][\w.@*?-]*")


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise LuceneError(f"Cannot parse query at character {pos}")
        pos = m.end() + (m["group"] is not None)  # field:( takes its parenthesis
        if m["lp"]:
            out.append(("(", None))
        elif m["rp"]:
            out.append((")", None))
        elif m["group"] is not None:
            out.append(("field(", m["field"]))  # field:( ... ): the group's default field
        elif m["quoted"] is not None:
            value = re.sub(r"\\(.)", r"\1", m["quoted"])
            out.append(("term", Term(m["field"], value, phrase=True)))
        elif m["field"] is None and m["bare"] in ("AND", "OR", "NOT", "&&", "||"):
            out.append(({"&&": "AND", "||": "OR"}.get(m["bare"], m["bare"]), None))
        else:
            value = m["bare"]
            if not _BARE_OK.fullmatch(value):
                raise LuceneError(
                    f"Cannot parse '{m['field'] or ''}:{value}': special characters "
                    "must be escaped or the value quoted"
                )
            out.append(("term", Term(m["field"], value)))
    return out


class _Parser:
    """expr := and ('OR'? and)*  (Lucene's default operator is OR: clauses side by side are
    alternatives); and := unary ('AND' unary)*; unary := 'NOT' unary | atom;
    atom := term | '(' expr ')' | field ':(' expr ')'."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens, self.pos = tokens, 0
        self.fields: list[str | None] = [None]

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Term | Op:
        if not self.tokens:
            raise LuceneError("Empty query")
        node = self.expr()
        if self.peek() is not None:
            raise LuceneError("Unexpected input after the end of the query")
        return node

    def expr(self) -> Term | Op:
        args = [self.conj()]
        while self.peek() in ("OR", "NOT", "term", "(", "field("):
            if self.peek() == "OR":
                self.take()
            args.append(self.conj())
        return args[0] if len(args) == 1 else Op("OR", args)

    def conj(self) -> Term | Op:
        args = [self.unary()]
        while self.peek() == "AND":
            self.take()
            args.append(self.unary())
        return args[0] if len(args) == 1 else Op("AND", args)

    def unary(self) -> Term | Op:
        if self.peek() == "NOT":
            self.take()
            return Op("NOT", [self.unary()])
        kind = self.peek()
        if kind in ("(", "field("):
            _, group_field = self.take()
            self.fields.append(group_field if kind == "field(" else self.fields[-1])
            node = self.expr()
            self.fields.pop()
            if self.peek() != ")":
                raise LuceneError("Missing closing parenthesis")
            self.take()
            return node
        if kind == "term":
            term: Term = self.take()[1]
            if term.field is None:
                term.field = self.fields[-1]
            return term
        raise LuceneError("Expected a field:value term")


def parse_lucene(text: str) -> Term | Op:
    return _Parser(_tokens(text)).parse()


def _phone_values(node: Term | Op) -> list[str]:
    if isinstance(node, Term):
        return [node.value] if node.field in (*PHONE_FIELDS, "workPhone") else []
    return [v for arg in node.args for v in _phone_values(arg)]


# ----- fields ------------------------------------------------------------------------------------
def parse_fields(text: str) -> list[tuple[str, list[str]]]:
    """``id,name,clientCorporation(id,name)`` -> [(id, []), (name, []), (clientCorporation,
    [id, name])]."""
    out, depth, current = [], 0, ""
    for ch in text + ",":
        if ch == "," and depth == 0:
            name, _, sub = current.strip().partition("(")
            out.append((name.strip(), [s.strip() for s in sub.rstrip(")").split(",") if s]))
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    return [(name, sub) for name, sub in out if name]


def _bh_error(status: int, message: str, key: str | None = None) -> SimResponse:
    body: dict[str, Any] = {"errorCode": status, "errorMessage": message}
    if key:
        body["errorMessageKey"] = key
    return SimResponse(status, body)


class BullhornSimulator(Simulator):
    name = "bullhorn"

    def __init__(
        self, contacts: str | Path | Iterable[Mapping[str, Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(contacts, **kwargs)
        self.records: dict[str, list[dict[str, Any]]] = {
            e: [] for e in (*ENTITIES, "JobOrder", "Placement")
        }
        jobs: dict[Any, dict[str, Any]] = {}
        for index, seed in enumerate(self.contacts):
            entity, record = to_record(seed, index)
            self.records[entity].append(record)
            # Seed "job_orders": [{id, title, isOpen}] of a ClientContact (its JobOrders).
            for job in seed.get("job_orders") or []:
                record_job = {
                    "id": job["id"],
                    "title": job.get("title"),
                    "isOpen": bool(job.get("isOpen", True)),
                    "clientContact": {"id": record["id"]},
                    "clientContact.id": record["id"],  # what Lucene's dotted field reads
                }
                jobs[job["id"]] = record_job
                self.records["JobOrder"].append(record_job)
        # Seed "placements" of a Candidate: [{id, job_order (a seeded job order's id, or
        # {id, title} of one no ClientContact owns), status, dateBegin}].
        for seed in self.contacts:
            for placed in seed.get("placements") or []:
                self.records["Placement"].append(self._placement(seed, placed, jobs))
        self.sessions: set[str] = set()
        self.logins = 0
        self.reject_sessions = False

    @staticmethod
    def _placement(
        seed: Mapping[str, Any], placed: Mapping[str, Any], jobs: Mapping[Any, Mapping[str, Any]]
    ) -> dict[str, Any]:
        ref = placed.get("job_order")
        job = jobs.get(ref) if not isinstance(ref, Mapping) else ref
        job = job or {"id": ref, "title": None}
        owner = job.get("clientContact")
        first, last = _split_name(str(seed.get("name") or ""))
        cid = int(seed["id"]) if str(seed.get("id")).isdigit() else seed.get("id")
        return {
            "id": placed["id"],
            "status": placed.get("status") or "Placed",
            "dateBegin": _epoch_ms(placed.get("dateBegin")),
            "dateEnd": _epoch_ms(placed.get("dateEnd")),
            "jobOrder": {"id": job["id"], "title": job.get("title")},
            "candidate": {"id": cid, "firstName": first, "lastName": last},
            # What Lucene's dotted fields read.
            "candidate.id": cid,
            "jobOrder.id": job["id"],
            "jobOrder.clientContact.id": owner["id"] if isinstance(owner, Mapping) else None,
        }

    # ----- knobs for tests -----------------------------------------------------------------
    def expire_sessions(self) -> None:
        """Every BhRestToken issued so far stops working (a timed-out session)."""
        with self.lock:
            self.sessions.clear()

    @property
    def rest_path(self) -> str:
        return f"/rest-services/{CORP_TOKEN}/"

    # ----- vendor hooks --------------------------------------------------------------------
    def route(self, req: SimRequest) -> SimResponse:
        if req.path == "/rest-services/login" and req.method in ("GET", "POST"):
            return self._login(req)
        if not req.path.startswith(self.rest_path):
            return _bh_error(404, f"No such resource: {req.path}")
        token = req.header("BhRestToken") or req.arg("BhRestToken")
        with self.lock:
            valid = token in self.sessions and not self.reject_sessions
        if not valid:
            return _bh_error(
                401, "Bad 'BhRestToken' or timed-out.", "errors.authentication.invalidRestToken"
            )
        rest = req.path[len(self.rest_path) :]
        if rest.startswith("search/") and req.method in ("GET", "POST"):
            return self._search(req, rest.removeprefix("search/"))
        if rest.startswith("settings/") and req.method == "GET":
            # rest-api-docs "Settings": GET settings/{name},{name} -> {name: value, ...}
            known = {"userId": 1234, "corporationName": "Sim Staffing", "corporationId": 42}
            names = rest.removeprefix("settings/").split(",")
            return SimResponse(200, {n: known[n] for n in names if n in known})
        return _bh_error(404, f"No such resource: {req.path}")

    def rate_limit_headers(self, state: WindowState) -> dict[str, str]:
        """``ratelimit-*`` (IETF draft fields, reset in seconds left), sent while a limit is
        set, as the pods App Connect's Bullhorn connector reads them on do."""
        return {
            "ratelimit-limit": str(state.limit),
            "ratelimit-remaining": str(state.remaining),
            "ratelimit-reset": str(max(1, math.ceil(state.retry_after_s))),
        }

    def rate_limit_response(self, state: WindowState) -> SimResponse:
        # No Retry-After: the message and the ratelimit-* headers are all Bullhorn says.
        return _bh_error(429, "API request rate exceeded: please wait 1 second then retry.")

    # ----- endpoints -----------------------------------------------------------------------
    def _login(self, req: SimRequest) -> SimResponse:
        if req.arg("access_token") != self.token:
            return _bh_error(
                401,
                "Invalid or expired OAuth access token.",
                "errors.authentication.invalidOAuthToken",
            )
        session = secrets.token_hex(16)
        with self.lock:
            self.sessions.add(session)
            self.logins += 1
        return SimResponse(200, {"BhRestToken": session, "restUrl": self.url + self.rest_path})

    def _search(self, req: SimRequest, entity: str) -> SimResponse:
        if entity not in self.records:
            return _bh_error(400, f"Entity '{entity}' is not searchable.")
        fields_arg = req.arg("fields")
        if not fields_arg:
            return _bh_error(400, "Missing required parameter 'fields'.")
        fields = parse_fields(fields_arg)
        if fields != [("*", [])]:
            unknown = [f for f, _ in fields if f not in FIELDS[entity]]
            if unknown:
                return _bh_error(400, f"Invalid field '{unknown[0]}' for entity {entity}.")
        body = req.json()
        query = body.get("query") if isinstance(body, dict) else None
        query = query or req.arg("query")
        if not isinstance(query, str) or not query.strip():
            return _bh_error(400, "Missing required parameter 'query'.")
        try:
            tree = parse_lucene(query)
            start = max(0, int(req.arg("start") or 0))
            count = min(MAX_COUNT, max(1, int(req.arg("count") or DEFAULT_COUNT)))
        except LuceneError as exc:
            return _bh_error(400, f"Error parsing search query: {exc}")
        except ValueError:
            return _bh_error(400, "Parameters 'start' and 'count' must be integers.")
        for value in dict.fromkeys(_phone_values(tree)):
            self.record_query(value)
        matches = [r for r in self.records[entity] if tree.matches(r)]
        page = matches[start : start + count]
        data = [self._project(r, fields) for r in page]
        return SimResponse(
            200, {"total": len(matches), "start": start, "count": len(data), "data": data}
        )

    @staticmethod
    def _project(record: Mapping[str, Any], fields: list[tuple[str, list[str]]]) -> dict[str, Any]:
        if fields == [("*", [])]:
            return {**record, "_score": 1.0}
        out: dict[str, Any] = {"id": record["id"], "_score": 1.0}  # id comes whatever is asked
        for name, sub in fields:
            value = record.get(name)
            if name in TO_ONE and isinstance(value, Mapping):
                # A to-one association always carries its id, plus the sub-fields asked for.
                value = {"id": value["id"], **{s: value.get(s) for s in sub if s != "id"}}
            out[name] = value
        return out


SIMULATOR = BullhornSimulator
