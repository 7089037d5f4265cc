"""The OpenAPI schema and its Swagger UI, served from our origin under our CSP."""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.negotiation import DefaultContentNegotiation


class SchemaView(SpectacularAPIView):
    # ?format=json (or yaml) chooses the schema's form, as drf-spectacular documents.
    content_negotiation_class = DefaultContentNegotiation


class DocsView(SpectacularSwaggerSplitView):
    # drf-spectacular's page carries an inline <style>, which our CSP refuses; ours loads a
    # stylesheet instead. The split view serves the start-up script from its own URL
    # (?script), so no inline script either.
    template_name = "api/swagger_ui.html"
    url_name = "api:schema"
    # A page to read, nothing to describe: DRF's OPTIONS answer would be rendered with the
    # page's template, which then lacked its script's name (a 500).
    http_method_names = ["get", "head"]
