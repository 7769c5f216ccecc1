"""The API documents themselves: valid against their specifications, committed
as generated, and covering every route, message, error and close code."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from chat_service.api.asyncapi import CLOSE_CODE_MEANINGS, build_asyncapi
from chat_service.api.documents import DOCUMENTS
from chat_service.api.spec import build_openapi
from chat_service.app import create_app
from chat_service.config import Config
from chat_service.realtime.close_codes import CloseCode
from chat_service.realtime.message import ErrorCode
from chat_service.realtime.schemas import ERROR_CODE_MEANINGS
from chat_service.runtime import ChatRuntime

REPO = Path(__file__).resolve().parent.parent
ASYNCAPI_SCHEMA = json.loads((Path(__file__).parent / "schemas/asyncapi-3.0.0.json").read_text())


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    return [error.message for error in validator.iter_errors(document)]


@pytest.mark.parametrize("path", list(DOCUMENTS), ids=str)
def test_committed_document_is_the_generated_one(path: Path) -> None:
    assert (REPO / path).read_text(encoding="utf-8") == DOCUMENTS[path](), (
        f"{path} is out of date: run `make openapi`"
    )


def test_openapi_document_is_valid() -> None:
    validate_openapi(build_openapi())


def test_openapi_validator_rejects_a_broken_document() -> None:
    broken = build_openapi()
    # A path template whose parameter is not declared.
    broken["paths"]["/api/chat-api/ws/{room}"]["get"]["parameters"] = []
    with pytest.raises(OpenAPIValidationError):
        validate_openapi(broken)


def test_asyncapi_document_is_valid() -> None:
    committed = yaml.safe_load((REPO / "openapi/asyncapi.yaml").read_text(encoding="utf-8"))
    assert asyncapi_errors(committed) == []


def test_asyncapi_schema_rejects_a_broken_document() -> None:
    broken = build_asyncapi()
    broken["channels"]["namedRoom"]["parameters"]["room"]["schema"] = {"type": "string"}
    assert asyncapi_errors(broken)


def test_every_route_is_in_the_openapi_document() -> None:
    app = create_app(ChatRuntime(Config()))
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule): rule.websocket
        for rule in app.url_map.iter_rules()
    }
    paths = build_openapi()["paths"]
    assert set(routes) == set(paths)
    for path, websocket in routes.items():
        assert ("WebSocket" in paths[path]["get"]["tags"]) == websocket, path


def test_websocket_endpoints_are_described_as_the_issue_asks() -> None:
    document = build_openapi()
    assert {"name": "WebSocket", "description": "Real-time WebSocket endpoints"} in document["tags"]
    for path in ("/api/chat-api/ws", "/api/chat-api/ws/{room}"):
        operation = document["paths"][path]["get"]
        assert set(operation["responses"]) == {"101", "400", "401", "403", "429", "503"}
        assert {"token", "user_id"} <= {p["name"] for p in operation["parameters"]}
    (room,) = (
        p
        for p in document["paths"]["/api/chat-api/ws/{room}"]["get"]["parameters"]
        if p["name"] == "room"
    )
    assert room["in"] == "path"
    assert room["schema"]["pattern"] == "^[A-Za-z0-9._-]{1,64}$"


def test_every_message_example_is_valid() -> None:
    messages = build_asyncapi()["components"]["messages"]
    for name, message in messages.items():
        validator = jsonschema.Draft7Validator(message["payload"])
        assert message["examples"], name
        for example in message["examples"]:
            validator.validate(example["payload"])


def test_message_schemas_refuse_what_the_protocol_refuses() -> None:
    messages = build_asyncapi()["components"]["messages"]
    wrong = copy.deepcopy(messages["chat"]["examples"][0]["payload"])
    del wrong["ts"]
    assert not jsonschema.Draft7Validator(messages["chat"]["payload"]).is_valid(wrong)
    assert not jsonschema.Draft7Validator(messages["error"]["payload"]).is_valid(
        {"type": "error", "code": "no_such_code", "detail": ""}
    )


def test_every_error_and_close_code_is_documented() -> None:
    assert set(ERROR_CODE_MEANINGS) == set(ErrorCode)
    assert set(CLOSE_CODE_MEANINGS) == set(CloseCode)
    document = build_asyncapi()
    assert [entry["code"] for entry in document["x-close-codes"]] == [int(c) for c in CloseCode]
    for code in CloseCode:
        assert f"| {int(code)} |" in document["info"]["description"]
