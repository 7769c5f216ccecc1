"""The OpenAPI 3.1 document of the service's HTTP side: health, the API
documents and their docs page, and the WebSocket upgrade endpoints.

The messages exchanged once a WebSocket is open are beyond OpenAPI; the
AsyncAPI document (`asyncapi.py`) describes them. Tests hold the routes to
this document (schemathesis for the HTTP endpoints, real upgrades for the
WebSocket ones).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Final

from ..realtime.message import DEFAULT_ROOM, MAX_SEQ
from ..realtime.schemas import MEMBER_SCHEMA, NAME_SCHEMA, SERVER_FRAMES
from ..web import PAGE_ASSETS, PAGE_ASSETS_PATH, PAGE_PATH
from .handshake import (
    API_PREFIX,
    AUTH_DESCRIPTION,
    METRICS_PATH,
    QUERY_PARAMETERS,
    REFUSALS,
    WS_PATH,
)
from .messages_routes import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MESSAGES_PATH
from .presence_routes import MAX_PRESENCE_PAGE, PRESENCE_PATH
from .publish_doc import PUBLISH_OPERATION, PUBLISH_SECURITY_SCHEME
from .rooms_routes import ROOMS_PATH

__all__ = [
    "ASYNCAPI_PATH",
    "DOCS_ASSETS",
    "DOCS_PATH",
    "OPENAPI_PATH",
    "SERVICE_VERSION",
    "build_openapi",
]

Schema = dict[str, Any]

SERVICE_VERSION: Final = version("chat_service")

OPENAPI_PATH: Final = f"{API_PREFIX}/openapi.json"
ASYNCAPI_PATH: Final = f"{API_PREFIX}/asyncapi.yaml"
DOCS_PATH: Final = f"{API_PREFIX}/docs"
# The files of swagger-ui-py's Swagger UI build that the docs page loads, and their media types.
DOCS_ASSETS: Final = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}

_WEBSOCKET_TAG: Final = "WebSocket"
_PAGE_TAG: Final = "Chat page"
_ROOMS_TAG: Final = "Rooms"
_PUBLISH: Final = {"tags": [_ROOMS_TAG], **PUBLISH_OPERATION}

_DESCRIPTION: Final = f"""\
A real-time chat server: clients join a room over a WebSocket and every chat
message of the room reaches every client in it.

This document describes the HTTP side: health, these documents, and how a
WebSocket is opened or refused. The frames exchanged over the WebSocket are
described in the AsyncAPI document at [{ASYNCAPI_PATH}]({ASYNCAPI_PATH}).
"""


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _closed_object(properties: Schema) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _get(tag: str, operation_id: str, summary: str, responses: Schema, **extra: Any) -> Schema:
    return {
        "get": {
            "tags": [tag],
            "operationId": operation_id,
            "summary": summary,
            **extra,
            "responses": responses,
        }
    }


def _health_paths() -> Schema:
    return {
        "/healthz": _get(
            "Health",
            "healthz",
            "The process is alive and serving HTTP",
            {
                "200": {
                    "description": "Alive",
                    "content": _json(
                        _closed_object(
                            {
                                "status": {"const": "ok"},
                                "tasks": {
                                    "type": "integer",
                                    "minimum": 1,
                                    "description": "trio tasks the process runs (for leak checks)",
                                },
                            }
                        )
                    ),
                }
            },
        ),
        "/readyz": _get(
            "Health",
            "readyz",
            "Whether this instance takes new clients",
            {
                "200": {
                    "description": "Every long-lived task runs and fan-out works",
                    "content": _json(
                        _closed_object(
                            {
                                "status": {"const": "ready"},
                                "connections": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "WebSocket clients of this instance",
                                },
                            }
                        )
                    ),
                },
                "503": {
                    "description": (
                        "Not ready; `reason` says why (`starting`, `draining`, `redis_unavailable`)"
                    ),
                    "content": _json(
                        _closed_object(
                            {"status": {"const": "not_ready"}, "reason": {"type": "string"}}
                        )
                    ),
                },
            },
        ),
    }


def _metrics_paths() -> Schema:
    return {
        METRICS_PATH: _get(
            "Health",
            "metrics",
            "This instance's metrics, for Prometheus",
            {
                "200": {
                    "description": (
                        "Every metric in Prometheus' text exposition format (version 0.0.4); "
                        "the README lists them"
                    ),
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        )
    }


def _documentation_paths() -> Schema:
    return {
        OPENAPI_PATH: _get(
            "Documentation",
            "openapi",
            "This OpenAPI document",
            {"200": {"description": "OpenAPI 3.1", "content": _json({"type": "object"})}},
        ),
        ASYNCAPI_PATH: _get(
            "Documentation",
            "asyncapi",
            "The AsyncAPI 3.0 document of the WebSocket messages",
            {
                "200": {
                    "description": "AsyncAPI 3.0, YAML",
                    "content": {"application/yaml": {"schema": {"type": "object"}}},
                }
            },
        ),
        DOCS_PATH: _get(
            "Documentation",
            "docs",
            "A page that shows this document (Swagger UI, served by this service)",
            {
                "200": {
                    "description": "The page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        ),
        f"{DOCS_PATH}/{{asset}}": _asset(
            "Documentation", "docsAsset", "A file the docs page loads", DOCS_ASSETS
        ),
    }


def _asset(tag: str, operation_id: str, summary: str, assets: dict[str, str]) -> Schema:
    """GET of one of a page's files, named in the path (`assets`: name -> media type)."""
    return _get(
        tag,
        operation_id,
        summary,
        {
            "200": {
                "description": "The file",
                "content": {media: {} for media in sorted(set(assets.values()))},
            },
            "404": {
                "description": "No such file",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
        },
        parameters=[
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": list(assets)},
            }
        ],
    )


def _page_paths() -> Schema:
    return {
        PAGE_PATH: _get(
            _PAGE_TAG,
            "chatPage",
            "The chat page: rooms, messages and people, in the browser (served by this service)",
            {
                "200": {
                    "description": "The page",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        ),
        f"{PAGE_ASSETS_PATH}/{{asset}}": _asset(
            _PAGE_TAG, "chatPageAsset", "A file the chat page loads", PAGE_ASSETS
        ),
    }


def _error(errors: dict[str, str], **extra: Any) -> Schema:
    """A JSON error answer: `error` one of `errors` (code -> when), `detail` for people."""
    return {
        "description": "; ".join(f"`{error}`: {when}" for error, when in errors.items()),
        "content": _json(
            _closed_object(
                {
                    "error": {"type": "string", "enum": list(errors)},
                    "detail": {"type": "string", "description": "for people"},
                }
            )
        ),
        **extra,
    }


_BEARER_CHALLENGE: Final = {
    "WWW-Authenticate": {
        "required": True,
        "description": "`Bearer`",
        "schema": {"type": "string", "const": "Bearer"},
    }
}


def _token_refusals() -> Schema:
    """The 401 and 403 answers of an HTTP room endpoint, as the socket's upgrade's."""
    return {
        "401": _error(
            {"unauthorized": "(auth on) as the WebSocket upgrade's"},
            headers=_BEARER_CHALLENGE,
        ),
        "403": _error({"forbidden_room": "(auth on) the token's `rooms` claim does not cover it"}),
    }


def _history_message() -> Schema:
    """A chat frame as history keeps it: always with its `seq`, never a retry's answer."""
    chat = next(frame for frame in SERVER_FRAMES if frame.key == "chat").schema
    properties = {
        name: schema for name, schema in chat["properties"].items() if name != "duplicate"
    }
    required = [*chat["required"], "seq"]
    return chat | {"properties": properties, "required": required}


def _room_messages_path() -> Schema:
    room = _parameter("room", "path", NAME_SCHEMA)
    before = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_SEQ,
        "description": (
            "Only messages with a smaller `seq` (the previous answer's `next_before`); "
            "default: from the newest."
        ),
    }
    limit = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE_SIZE,
        "default": DEFAULT_PAGE_SIZE,
        "description": f"At most this many messages (default {DEFAULT_PAGE_SIZE}).",
    }
    token = QUERY_PARAMETERS["token"]
    page = _closed_object(
        {
            "room": NAME_SCHEMA,
            "epoch": {
                "type": "string",
                "description": (
                    "the room's epoch: pages of one epoch fit together; another one means "
                    "the history was lost in between"
                ),
            },
            "messages": {
                "type": "array",
                "maxItems": MAX_PAGE_SIZE,
                "items": _history_message(),
                "description": "chat messages as the socket delivered them, oldest first",
            },
            "has_more": {"type": "boolean", "description": "older messages are in history"},
            "next_before": {
                "type": ["integer", "null"],
                "description": "`before` for the next older page; null when `has_more` is false",
            },
        }
    )
    return {
        "get": {
            "tags": [_ROOMS_TAG],
            "operationId": "roomMessages",
            "summary": "A page of the room's history, newest first by page, oldest first within",
            "description": (
                "The room's last HISTORY_SIZE chat messages (at most HISTORY_TTL seconds old) "
                "are kept; this pages backwards through them: without `before` the newest "
                "`limit`, then with `before` set to `next_before` the ones before those, "
                "until `has_more` is false. History off (HISTORY_TTL=0): always empty.\n\n"
                f"Authentication, as the WebSocket's: {AUTH_DESCRIPTION} With a `rooms` claim, "
                "only the rooms it covers."
            ),
            "parameters": [
                room,
                _parameter("before", "query", before),
                _parameter("limit", "query", limit),
                _parameter("token", "query", token),
            ],
            "security": [{}, {"bearerAuth": []}],
            "responses": {
                "200": {"description": "A page of history", "content": _json(page)},
                "400": _error(
                    {
                        "invalid_room": "the room name is not 1 to 64 of A-Z a-z 0-9 . _ -",
                        "invalid_before": f"`before` is not an integer from 1 to {MAX_SEQ}",
                        "invalid_limit": f"`limit` is not an integer from 1 to {MAX_PAGE_SIZE}",
                    }
                ),
                **_token_refusals(),
                "503": _error(
                    {"unavailable": "the history cannot be read now (Redis is down): retry"}
                ),
            },
        }
    }


def _rooms_path() -> Schema:
    count = {"type": "integer", "minimum": 0}
    room = _closed_object(
        {
            "room": NAME_SCHEMA,
            "local_connections": count | {"description": "connections on this instance"},
            "local_users": count | {"description": "distinct users on this instance"},
            "users": count | {"description": "distinct users across the cluster (presence)"},
            "connections": count | {"description": "connections across the cluster (presence)"},
        }
    )
    body = _closed_object(
        {
            "rooms": {"type": "array", "items": room, "description": "by name"},
            "connections": count | {"description": "WebSocket clients of this instance"},
        }
    )
    return {
        "get": {
            "tags": [_ROOMS_TAG],
            "operationId": "rooms",
            "summary": "The rooms with members on this instance, with their counts",
            "description": (
                "Every room that has at least one member on the instance answering, with its "
                "members here and, from presence, across the cluster.\n\n"
                f"Authentication, as the WebSocket's: {AUTH_DESCRIPTION} With a `rooms` claim, "
                "only the rooms it covers are listed."
            ),
            "parameters": [_parameter("token", "query", QUERY_PARAMETERS["token"])],
            "security": [{}, {"bearerAuth": []}],
            "responses": {
                "200": {"description": "The rooms", "content": _json(body)},
                "401": _token_refusals()["401"],
            },
        }
    }


def _room_presence_path() -> Schema:
    limit = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PRESENCE_PAGE,
        "description": "At most this many members (default PRESENCE_LIST_MAX, 100).",
    }
    cursor = NAME_SCHEMA | {
        "description": (
            "Only members after this `user_id` (the previous answer's `next_cursor`, or the "
            "last member a `subscribed` frame listed); default: from the first."
        )
    }
    page = _closed_object(
        {
            "room": NAME_SCHEMA,
            "users": {"type": "integer", "minimum": 0, "description": "distinct users"},
            "connections": {"type": "integer", "minimum": 0, "description": "their connections"},
            "members": {
                "type": "array",
                "maxItems": MAX_PRESENCE_PAGE,
                "items": MEMBER_SCHEMA,
                "description": "by `user_id`",
            },
            "next_cursor": {
                "type": ["string", "null"],
                "description": "`cursor` for the next page; null on the last",
            },
        }
    )
    return {
        "get": {
            "tags": [_ROOMS_TAG],
            "operationId": "roomPresence",
            "summary": "Who is in the room, across the cluster, per user",
            "description": (
                "Every user with a connection subscribed to the room on any instance, with "
                "their number of connections, by `user_id`, `limit` at a time: the first page "
                "is the list a `subscribed` frame carries; `next_cursor` names the next. An "
                "instance that died drops out within PRESENCE_TTL seconds.\n\n"
                f"Authentication, as the WebSocket's: {AUTH_DESCRIPTION} With a `rooms` claim, "
                "only the rooms it covers."
            ),
            "parameters": [
                _parameter("room", "path", NAME_SCHEMA),
                _parameter("limit", "query", limit),
                _parameter("cursor", "query", cursor),
                _parameter("token", "query", QUERY_PARAMETERS["token"]),
            ],
            "security": [{}, {"bearerAuth": []}],
            "responses": {
                "200": {"description": "A page of members", "content": _json(page)},
                "400": _error(
                    {
                        "invalid_room": "the room name is not 1 to 64 of A-Z a-z 0-9 . _ -",
                        "invalid_limit": f"`limit` is not an integer from 1 to {MAX_PRESENCE_PAGE}",
                        "invalid_cursor": "`cursor` is not a user_id",
                    }
                ),
                **_token_refusals(),
                "503": _error(
                    {"unavailable": "presence cannot be read now (Redis is down): retry"}
                ),
            },
        }
    }


def _refusal_responses(*, named_room: bool) -> Schema:
    responses: Schema = {}
    for refusal in REFUSALS:
        errors = {
            error: when
            for error, when in refusal.errors.items()
            if named_room or error != "invalid_room"
        }
        response = _error(errors)
        response["description"] = "Refused before the upgrade: " + response["description"]
        if refusal.status == 400:
            response["description"] += (
                "; and a plain HTTP request that is no WebSocket upgrade gets an HTML Bad Request"
            )
            response["content"]["text/html"] = {"schema": {"type": "string"}}
        if refusal.status == 401:
            response["headers"] = _BEARER_CHALLENGE
        responses[str(refusal.status)] = response
    return responses


def _parameter(name: str, where: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": schema["description"],
        "schema": schema,
    }


def _websocket_operation(*, named_room: bool) -> Schema:
    room = "{room}" if named_room else f"the default room {DEFAULT_ROOM}"
    parameters = [_parameter(name, "query", schema) for name, schema in QUERY_PARAMETERS.items()]
    if named_room:
        parameters.insert(0, _parameter("room", "path", NAME_SCHEMA))
    return {
        "get": {
            "tags": [_WEBSOCKET_TAG],
            "operationId": "chatRoom" if named_room else "chatDefaultRoom",
            "summary": f"Join {room} over a WebSocket",
            "description": (
                f"A WebSocket upgrade (RFC 6455) that joins {room}. The first frame is "
                "`welcome`; from then on every chat message of the room reaches every client "
                "in it, the sender included, and only them; `join`/`leave` events reach the "
                "room's other clients; `pong` and `error` frames reach their client alone. "
                f"The frames are described in the AsyncAPI document ({ASYNCAPI_PATH}).\n\n"
                f"Authentication: {AUTH_DESCRIPTION}"
            ),
            "parameters": parameters,
            "security": [{}, {"bearerAuth": []}],
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket is open"},
                **_refusal_responses(named_room=named_room),
            },
        }
    }


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of this version of the service (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chat_service",
            "version": SERVICE_VERSION,
            "summary": "Real-time WebSocket chat: rooms, fan-out across instances",
            "description": _DESCRIPTION,
        },
        "tags": [
            {"name": _WEBSOCKET_TAG, "description": "Real-time WebSocket endpoints"},
            {"name": "Health", "description": "Liveness and readiness for orchestrators"},
            {"name": "Documentation", "description": "The API documents and their page"},
            {"name": _PAGE_TAG, "description": "A chat page for people, on the public protocol"},
            {"name": _ROOMS_TAG, "description": "A room's messages and presence over HTTP"},
        ],
        "paths": {
            WS_PATH: _websocket_operation(named_room=False),
            f"{WS_PATH}/{{room}}": _websocket_operation(named_room=True),
            MESSAGES_PATH: _room_messages_path() | {"post": _PUBLISH},
            PRESENCE_PATH: _room_presence_path(),
            ROOMS_PATH: _rooms_path(),
            **_health_paths(),
            **_metrics_paths(),
            **_documentation_paths(),
            **_page_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": AUTH_DESCRIPTION,
                },
                "publishAuth": PUBLISH_SECURITY_SCHEME,
            }
        },
    }
