"""`GET /docs`: Swagger UI over /openapi.json, every asset served from the installed package, so the page
works on servers with no route to a CDN."""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, abort, send_file

bp = Blueprint("docs", __name__)

# The static files of Swagger UI 5 (OpenAPI 3.1), shipped by this PyPI package; its Python code is not used.
_ASSETS = resources.files("flask_openapi3_swagger").joinpath("templates/swagger")
_FILES = {
    "swagger-ui.css": ("css/swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": ("js/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui-standalone-preset.js": ("js/swagger-ui-standalone-preset.js", "text/javascript"),
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Embedding service API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
      tryItOutEnabled: true,
      persistAuthorization: true
    });
  </script>
</body>
</html>
"""


@bp.get("/docs")
def page() -> Response:
    return Response(_PAGE, mimetype="text/html")


@bp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in _FILES:
        abort(404)
    path, mimetype = _FILES[name]
    with resources.as_file(_ASSETS.joinpath(path)) as file:
        response = send_file(file, mimetype=mimetype, max_age=86400)
    return response
