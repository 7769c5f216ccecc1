"""The API documents over HTTP: the OpenAPI and AsyncAPI documents, and a
Swagger UI page that shows the OpenAPI one.

The page works offline: its assets come from the swagger-ui-py package and
are served by this service, never by a CDN.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from quart import Response, abort, send_file
from quart_trio import QuartTrio

from .documents import render_asyncapi, render_openapi
from .spec import ASYNCAPI_PATH, DOCS_ASSETS, DOCS_PATH, OPENAPI_PATH

__all__ = ["register_docs"]

# swagger-ui-py installs its Swagger UI build as plain files inside the package.
_ASSET_DIR: Final = Path(str(files("swagger_ui").joinpath("static")))

_PAGE: Final = f"""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>chat_service API</title>
<link rel="icon" type="image/png" href="{DOCS_PATH}/favicon-32x32.png">
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "{OPENAPI_PATH}", dom_id: "#swagger-ui", deepLinking: true}});
</script>
</body>
</html>
"""


def register_docs(app: QuartTrio) -> None:
    """Mount the documents and the docs page on `app`.

    The documents are rendered once, here: they depend on the code alone.
    """
    openapi = render_openapi()
    asyncapi = render_asyncapi()

    @app.get(OPENAPI_PATH)
    async def openapi_document() -> Response:
        """The OpenAPI 3.1 document."""
        return Response(openapi, mimetype="application/json")

    @app.get(ASYNCAPI_PATH)
    async def asyncapi_document() -> Response:
        """The AsyncAPI 3.0 document of the WebSocket messages."""
        return Response(asyncapi, mimetype="application/yaml")

    @app.get(DOCS_PATH)
    async def docs_page() -> Response:
        """The Swagger UI page for the OpenAPI document."""
        return Response(_PAGE, mimetype="text/html")

    @app.get(f"{DOCS_PATH}/<asset>")
    async def docs_asset(asset: str) -> Response:
        """One of the files the docs page loads; 404 for any other name."""
        if asset not in DOCS_ASSETS:
            abort(404)
        return await send_file(_ASSET_DIR / asset, mimetype=DOCS_ASSETS[asset])
