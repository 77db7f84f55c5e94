"""The OpenAPI document of the HTTP JSON API, generated from the .proto contract.

Written by `python -m tally.protogen` beside the generated protobuf code (`tally/v1/openapi.json`) from a
descriptor set compiled with source info, so every path, schema and field carries the comment the
contract gives it; `tests/tally/test_protogen.py` regenerates it and fails on any difference, so the
document can never drift from the contract or be edited by hand. The HTTP routes (`tally.api.http`)
are derived from the same descriptors at run time, so a new RPC is reachable and documented at once.

JSON follows protobuf's canonical mapping with the .proto field names (snake_case): 64-bit integers and
exact decimals are strings, timestamps RFC 3339 strings, enums their value names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2

FDP = descriptor_pb2.FieldDescriptorProto
_INT32 = {FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32, FDP.TYPE_UINT32, FDP.TYPE_FIXED32}
_INT64 = {FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64, FDP.TYPE_UINT64, FDP.TYPE_FIXED64}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time", "example": "2026-12-01T00:00:00Z"},
    ".google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    ".google.protobuf.Empty": {"type": "object"},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every refusal: the stable code (the same as gRPC's status, in snake_case), the HTTP status "
    "and a message that names the field and says what to do.",
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": {"type": "string", "example": "invalid_argument"},
                "status": {"type": "integer", "example": 400},
                "message": {"type": "string"},
                "retry_after_ms": {"type": "integer", "description": "When the server is saturated: retry after this."},
            },
        }
    },
}


def route_segment(service: str) -> str:
    """`BillingService` → `billing`: the path segment of a service's routes."""
    return service.removesuffix("Service").lower()


def _comments(f: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): " ".join(line.strip() for line in loc.leading_comments.strip().splitlines())
        for loc in f.source_code_info.location
        if loc.leading_comments.strip()
    }


def _field_schema(field: Any, messages: dict[str, Any], maps: dict[str, Any]) -> dict[str, Any]:
    if field.type == FDP.TYPE_MESSAGE and field.type_name in maps:
        entry = maps[field.type_name]
        value = next(f for f in entry.field if f.name == "value")
        return {"type": "object", "additionalProperties": _scalar(value, messages, maps)}
    schema = _scalar(field, messages, maps)
    if field.label == FDP.LABEL_REPEATED:
        return {"type": "array", "items": schema}
    return schema


def _scalar(field: Any, messages: dict[str, Any], maps: dict[str, Any]) -> dict[str, Any]:
    t = field.type
    if t == FDP.TYPE_MESSAGE:
        if field.type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[field.type_name])
        return {"$ref": f"#/components/schemas/{field.type_name.rsplit('.', 1)[-1]}"}
    if t == FDP.TYPE_ENUM:
        return {"$ref": f"#/components/schemas/{field.type_name.rsplit('.', 1)[-1]}"}
    if t == FDP.TYPE_STRING:
        return {"type": "string"}
    if t == FDP.TYPE_BOOL:
        return {"type": "boolean"}
    if t in _INT32:
        return {"type": "integer", "format": "int32"}
    if t in _INT64:
        return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    if t == FDP.TYPE_BYTES:
        return {"type": "string", "format": "byte"}
    return {"type": "number"}  # float/double: no money field uses them


def build(fds: descriptor_pb2.FileDescriptorSet, scopes: dict[str, str], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every service of package tally.v1 in `fds`; `scopes` maps a method name to
    the key scope it needs ("ingest|read" = either)."""
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    files = [f for f in fds.file if f.package == "tally.v1"]
    messages: dict[str, Any] = {}
    maps: dict[str, Any] = {}
    for f in files:
        for msg in f.message_type:
            messages[f".{f.package}.{msg.name}"] = msg
            for nested in msg.nested_type:
                if nested.options.map_entry:
                    maps[f".{f.package}.{msg.name}.{nested.name}"] = nested
    for f in files:
        notes = _comments(f)
        for e_i, enum in enumerate(f.enum_type):
            schemas[enum.name] = {
                "type": "string",
                "enum": [v.name for v in enum.value],
                "description": notes.get((5, e_i), ""),
            }
        for m_i, msg in enumerate(f.message_type):
            properties = {}
            for f_i, field in enumerate(msg.field):
                prop = _field_schema(field, messages, maps)
                note = notes.get((4, m_i, 2, f_i))
                if note:
                    prop = (
                        {**prop, "description": note} if "$ref" not in prop else {"allOf": [prop], "description": note}
                    )
                properties[field.name] = prop
            schemas[msg.name] = {"type": "object", "description": notes.get((4, m_i), ""), "properties": properties}
        for s_i, svc in enumerate(f.service):
            segment = route_segment(svc.name)
            for r_i, method in enumerate(svc.method):
                request = method.input_type.rsplit(".", 1)[-1]
                response = method.output_type.rsplit(".", 1)[-1]
                if method.client_streaming:
                    continue  # the bidirectional Ingest stream is gRPC only; IngestBatch is its unary form
                scope = scopes.get(method.name, "")
                body = (
                    {"application/x-ndjson": {"schema": {"$ref": f"#/components/schemas/{response}"}}}
                    if method.server_streaming
                    else {"application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}}
                )
                op: dict[str, Any] = {
                    "operationId": method.name,
                    "tags": [svc.name],
                    "summary": notes.get((6, s_i, 2, r_i), "").split(". ")[0][:120],
                    "description": notes.get((6, s_i, 2, r_i), "")
                    + (" One JSON object per line, as events happen." if method.server_streaming else ""),
                    "security": [{"bearer": []}],
                    "x-tally-scope": scope,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
                    },
                    "responses": {
                        "200": {"description": response, "content": body},
                        "default": {
                            "description": "refused: see error.code",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        },
                    },
                }
                paths[f"/v1/{segment}/{method.name}"] = {"post": op}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tally HTTP JSON API",
            "version": version,
            "description": "Every gRPC method of tally.v1 as JSON over HTTP: POST /v1/<service>/<Method> with the "
            "request message as a JSON object (field names as in the .proto). The same keys (Authorization: "
            "Bearer), validation and error codes as gRPC. 64-bit integers and exact decimals are strings.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a Tally API key"}},
            "schemas": schemas,
        },
        "paths": paths,
    }


__all__ = ["ERROR_SCHEMA", "build", "route_segment"]
