"""Bearer-token checks for the routes marked `auth=True` when API_KEYS is set."""

from __future__ import annotations

import hmac

from flask import Flask, current_app, request

from ...errors import Unauthorized
from .spec import operation_of


def init_auth(app: Flask, api_keys: tuple[str, ...]) -> None:
    if not api_keys:
        return
    keys = tuple(key.encode() for key in api_keys)

    @app.before_request
    def _check_bearer():
        op = operation_of(current_app.view_functions.get(request.endpoint))
        if op is None or not op.auth:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        offered = token.strip().encode()
        # Compare against every key so the time taken does not reveal which matched.
        if not any([hmac.compare_digest(offered, key) for key in keys]):
            raise Unauthorized("invalid API key")
        return None
