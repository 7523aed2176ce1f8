"""The served studio: `streamlit run serve.py` (what `make run` and the Dockerfile do) serves the
pages of app.py plus one endpoint, ``storage.auth.COOKIE_ENDPOINT``, which sets the session cookie
from the server (HttpOnly, SameSite=Strict, Secure over https) for a one-time ticket the page
holds. `streamlit run app.py` serves the same pages, with a cookie set by the page's script
(SameSite=Strict, not HttpOnly).
"""

from __future__ import annotations

import streamlit as st
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage import auth


def _https(request: Request) -> bool:
    """Whether the browser talks https (here, or to a proxy in front that says so)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def session_cookie(request: Request) -> Response:
    """Redeem the posted ticket (``{"ticket": "..."}``) for a Set-Cookie header; 403 otherwise."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    value = auth.HANDOFFS.redeem(body.get("ticket") if isinstance(body, dict) else None)
    if value is None:
        return Response(status_code=403)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.headers.append("Set-Cookie", auth.session_cookie_header(value, secure=_https(request)))
    return response


auth.HANDOFFS.endpoint = True
app = st.App("app.py", routes=[Route(auth.COOKIE_ENDPOINT, session_cookie, methods=["POST"])])
