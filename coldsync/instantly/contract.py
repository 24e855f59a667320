"""Instantly's OpenAPI contract, trimmed to the operations coldsync uses, and a validator for it.

`openapi-trimmed.json` beside this file is DERIVED from Instantly's published OpenAPI 3.1 document
(kept outside the repository, in ../shared/instantly/openapi-v2.json) by the command

    python -m coldsync.instantly.contract --source ../shared/instantly/openapi-v2.json

It keeps only the operations in `OPERATIONS` (what the client sends) and `SIMULATED_OPERATIONS` (what
the simulator also serves, for work to come), and of them only what validation needs: parameters,
request body schema, response schemas per status, plus the components they reference. Examples are
dropped. Where a recorded real response contradicts the spec, the recording wins and the difference
is patched in and listed in `RECORDED_DEVIATIONS` (and in the file's `x-coldsync` note).

The validator (`request_errors`, `response_errors`, `validate_request`, `validate_response`) uses
jsonschema (Draft 2020-12), imported lazily: the runtime sync never needs it, tests and the simulator
contract checks do.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from coldsync.redact import redact

API_PREFIX = "/api/v2"
TRIMMED_PATH = Path(__file__).with_name("openapi-trimmed.json")
DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "instantly" / "openapi-v2.json"
_BASE_URI = "urn:coldsync:instantly-openapi-trimmed"

#: The (method, path) operations coldsync's client sends, as the spec spells them.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("post", "/api/v2/leads/add"),
    ("post", "/api/v2/leads/list"),
    ("get", "/api/v2/leads/{id}"),
    ("delete", "/api/v2/leads/{id}"),
    ("delete", "/api/v2/leads"),
    ("get", "/api/v2/campaigns"),
    ("get", "/api/v2/campaigns/{id}"),
    ("post", "/api/v2/campaigns/{id}/activate"),
    ("post", "/api/v2/campaigns/{id}/pause"),
    ("get", "/api/v2/campaigns/analytics"),
    ("get", "/api/v2/campaigns/analytics/daily"),
    ("get", "/api/v2/campaigns/{id}/sending-status"),
    ("post", "/api/v2/block-lists-entries/bulk-create"),
    ("get", "/api/v2/block-lists-entries"),
    ("get", "/api/v2/workspaces/current"),
    ("get", "/api/v2/lead-labels"),
    ("post", "/api/v2/leads/move"),
    ("get", "/api/v2/background-jobs/{id}"),
    # webhooks (issue #18): register, status, resume, and the backfill of failed deliveries
    ("post", "/api/v2/webhooks"),
    ("get", "/api/v2/webhooks"),
    ("post", "/api/v2/webhooks/{id}/resume"),
    ("patch", "/api/v2/webhooks/{id}"),  # a rotated secret, or a new receiver URL, on an existing webhook
    ("delete", "/api/v2/webhooks/{id}"),  # a second coldsync webhook of one event type
    ("get", "/api/v2/webhook-events"),
)

#: Operations the simulator also serves, held to the same contract, that the client does not send yet:
#: outcome policies (issue #13) may use them (lists, interest statuses, subsequences); the webhook ones
#: complete the resource for tests and the demo (issue #18).
SIMULATED_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("post", "/api/v2/lead-lists"),
    ("post", "/api/v2/leads/update-interest-status"),
    ("post", "/api/v2/leads/subsequence/move"),
    ("post", "/api/v2/leads/subsequence/remove"),
    # the rest of the webhook resource the simulator serves (issue #18)
    ("get", "/api/v2/webhooks/{id}"),
    ("post", "/api/v2/webhooks/{id}/test"),
    ("get", "/api/v2/webhooks/event-types"),
)

#: Where the live API (recorded 2026-06-30) disagrees with the spec, and how the trimmed copy follows it.
RECORDED_DEVIATIONS: tuple[str, ...] = (
    "Lead.status also takes 0: list-only leads show status 0 (recorded list-leads.json), "
    "the spec's enum stops at 1, 2, 3, -1, -2, -3.",
    "POST /leads/update-interest-status answers 200 (recorded update-lead-interest-status.json), "
    "the spec documents 202 only: the trimmed copy documents the same body under 200 too.",
    "Lead.lt_interest_status: the spec's description says it is a built-in value OR a custom label's "
    "interest value, its enum lists only the built-in ones: the trimmed copy takes any whole number in "
    "-30000..30000 (the range subsequence conditions accept for custom labels).",
)

#: The error body every Instantly error shares (used for statuses an operation does not document).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "statusCode": {"type": "number"},
        "error": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["statusCode", "error", "message"],
}

_DROPPED_KEYS = frozenset({"example", "examples"})


class ContractViolation(ValueError):
    """A request or response that does not match the trimmed Instantly contract."""


# --------------------------------------------------------------------------------------------------
# Trimming


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _DROPPED_KEYS}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _trim_operation(op: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.get("operationId")}
    params = [
        {k: p[k] for k in ("name", "in", "required", "schema") if k in p}
        for p in op.get("parameters", [])
        if isinstance(p, dict)
    ]
    if params:
        out["parameters"] = params
    body = op.get("requestBody")
    if isinstance(body, dict):
        schema = body.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            out["requestBody"] = {
                "required": bool(body.get("required", False)),
                "content": {"application/json": {"schema": schema}},
            }
    responses: dict[str, Any] = {}
    for status, response in op.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        responses[status] = {"content": {"application/json": {"schema": schema}}} if schema is not None else {}
    out["responses"] = responses
    return out


def _apply_recorded_deviations(doc: dict[str, Any]) -> None:
    status = doc["components"]["schemas"]["Lead"]["properties"]["status"]
    if 0 not in status["enum"]:
        status["enum"] = [*status["enum"], 0]
    lead_interest = doc["components"]["schemas"]["Lead"]["properties"].get("lt_interest_status")
    if lead_interest is not None and "enum" in lead_interest:
        del lead_interest["enum"]
        lead_interest.update({"type": "integer", "minimum": -30000, "maximum": 30000})
    interest = doc["paths"].get("/api/v2/leads/update-interest-status", {}).get("post")
    if interest is not None and "202" in interest["responses"] and "200" not in interest["responses"]:
        interest["responses"]["200"] = copy.deepcopy(interest["responses"]["202"])


def trim(source: Mapping[str, Any]) -> dict[str, Any]:
    """The trimmed contract for `OPERATIONS` derived from the full OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in (*OPERATIONS, *SIMULATED_OPERATIONS):
        try:
            op = source["paths"][path][method]
        except KeyError:
            raise ContractViolation(f"the source document has no {method.upper()} {path}") from None
        paths.setdefault(path, {})[method] = _trim_operation(op)
    schemas = source.get("components", {}).get("schemas", {})
    wanted: set[str] = set()
    queue = sorted(_refs(paths))
    while queue:
        name = queue.pop()
        if name in wanted:
            continue
        if name not in schemas:
            raise ContractViolation(f"the source document references a missing schema {name}")
        wanted.add(name)
        queue.extend(sorted(_refs(schemas[name]) - wanted))
    doc: dict[str, Any] = {
        "openapi": source.get("openapi", "3.1.0"),
        "info": {
            "title": f"{source.get('info', {}).get('title', 'Instantly API')} (trimmed for coldsync)",
            "version": source.get("info", {}).get("version", ""),
        },
        "x-coldsync": {
            "derived_by": "python -m coldsync.instantly.contract --source <openapi-v2.json>",
            "operations": [f"{m.upper()} {p}" for m, p in OPERATIONS],
            "simulated_operations": [f"{m.upper()} {p}" for m, p in SIMULATED_OPERATIONS],
            "recorded_deviations": list(RECORDED_DEVIATIONS),
        },
        "paths": _strip(paths),
        "components": {"schemas": {name: _strip(copy.deepcopy(schemas[name])) for name in sorted(wanted)}},
    }
    _apply_recorded_deviations(doc)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Derive `openapi-trimmed.json` from Instantly's full OpenAPI document."""
    parser = argparse.ArgumentParser(
        prog="python -m coldsync.instantly.contract",
        description="Derive the trimmed Instantly OpenAPI contract coldsync's tests validate against.",
    )
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="full openapi-v2.json")
    parser.add_argument("--output", type=Path, default=TRIMMED_PATH, help="where to write the trimmed copy")
    args = parser.parse_args(argv)
    try:
        source = json.loads(args.source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    trimmed = trim(source)
    args.output.write_text(json.dumps(trimmed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    schemas = len(trimmed["components"]["schemas"])
    count = len(OPERATIONS) + len(SIMULATED_OPERATIONS)
    print(f"wrote {args.output}: {count} operations, {schemas} component schemas")
    return 0


# --------------------------------------------------------------------------------------------------
# Validation


@cache
def load_contract(path: Path = TRIMMED_PATH) -> dict[str, Any]:
    """The trimmed contract (read once)."""
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _template_regexes(doc: Mapping[str, Any]) -> list[tuple[re.Pattern[str], str, int]]:
    compiled = []
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
        compiled.append((re.compile(pattern), template, literals))
    return sorted(compiled, key=lambda item: -item[2])


def operation_for(method: str, path: str, doc: Mapping[str, Any] | None = None) -> tuple[str, str] | None:
    """(method, template) of the contract operation a concrete request path belongs to, or None."""
    doc = doc or load_contract()
    path = path.split("?", 1)[0]
    if not path.startswith(API_PREFIX + "/"):
        path = API_PREFIX + (path if path.startswith("/") else "/" + path)
    for pattern, template, _ in _template_regexes(doc):
        if pattern.match(path) and method.lower() in doc["paths"][template]:
            return method.lower(), template
    return None


@cache
def _validator(pointer: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resource = Resource.from_contents(load_contract(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    schema = {"$ref": f"{_BASE_URI}#{pointer}"}
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _error_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(ERROR_SCHEMA)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _errors(validator: Any, instance: Any, where: str) -> list[str]:
    problems = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    messages = []
    for problem in problems[:20]:
        location = "/".join(str(p) for p in problem.absolute_path) or "(root)"
        messages.append(f"{where} {location}: {redact(problem.message, 300)}")
    return messages


def _coerce_query(value: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def request_errors(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Contract violations of a request (body and query string); empty when it conforms."""
    doc = load_contract()
    found = operation_for(method, path, doc)
    if found is None:
        return [f"{method.upper()} {path}: not an operation of the trimmed contract"]
    op_method, template = found
    op = doc["paths"][template][op_method]
    where = f"{method.upper()} {template}"
    problems: list[str] = []
    declared = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
    for name, values in (query or {}).items():
        param = declared.get(name)
        if param is None:
            problems.append(f"{where} query: unknown parameter {name!r}")
            continue
        schema = param.get("schema", {})
        if schema.get("type") == "array":
            instance: Any = [_coerce_query(v, schema.get("items", {})) for v in values]
        else:
            if len(values) != 1:
                problems.append(f"{where} query: {name!r} given {len(values)} times")
                continue
            instance = _coerce_query(values[0], schema)
        pointer = _pointer("paths", template, op_method, "parameters", str(list(op["parameters"]).index(param)))
        problems += _errors(_validator(pointer + "/schema"), instance, f"{where} query {name}:")
    for name, param in declared.items():
        if param.get("required") and name not in (query or {}):
            problems.append(f"{where} query: missing required parameter {name!r}")
    request_body = op.get("requestBody")
    if request_body is None:
        if body is not None:
            problems.append(f"{where}: the operation takes no body")
        return problems
    schema = request_body["content"]["application/json"]["schema"]
    if body is None:
        if request_body.get("required") and schema.get("type") != "null":
            problems.append(f"{where}: the request body is required")
        return problems
    pointer = _pointer("paths", template, op_method, "requestBody", "content", "application/json", "schema")
    return problems + _errors(_validator(pointer), body, f"{where} body")


def response_errors(method: str, path: str, status: int, body: Any) -> list[str]:
    """Contract violations of a response body for that status; empty when it conforms."""
    doc = load_contract()
    found = operation_for(method, path, doc)
    if found is None:
        return [f"{method.upper()} {path}: not an operation of the trimmed contract"]
    op_method, template = found
    where = f"{method.upper()} {template} -> {status}"
    responses = doc["paths"][template][op_method]["responses"]
    response = responses.get(str(status))
    if response is None:
        if status >= 400:
            return _errors(_error_validator(), body, where)
        return [f"{where}: status not documented"]
    if "content" not in response:
        return [] if body in (None, "", b"") else [f"{where}: a body where none is documented"]
    pointer = _pointer("paths", template, op_method, "responses", str(status), "content", "application/json", "schema")
    return _errors(_validator(pointer), body, where)


def validate_request(
    method: str, path: str, *, body: Any = None, query: Mapping[str, Sequence[str]] | None = None
) -> None:
    """Raise `ContractViolation` listing what in the request breaks the contract."""
    problems = request_errors(method, path, body=body, query=query)
    if problems:
        raise ContractViolation("; ".join(problems))


def validate_response(method: str, path: str, status: int, body: Any) -> None:
    """Raise `ContractViolation` listing what in the response breaks the contract."""
    problems = response_errors(method, path, status, body)
    if problems:
        raise ContractViolation("; ".join(problems))


if __name__ == "__main__":
    sys.exit(main())
