"""The public web: the results portal and the Open311 GeoReport v2 API.

`bots/gateway.py` passes `portal_routes(...)` to `channels.webapp.build_app` as extra routes, so
the portal is served by the same web app as the webhooks. Every page and API answer is built
from `portal.public`, the one place that decides what the public may see.
"""
from portal.context import PortalContext
from portal.web import portal_routes

__all__ = ["PortalContext", "portal_routes"]
