"""Management request fields, declared once per route (spec.py): validation reads them, and so does
the OpenAPI document (openapi.py)."""

from __future__ import annotations

from .spec import HONOURED, REFUSED, STORED, Body, Field, read, stored_values, values

__all__ = ["HONOURED", "REFUSED", "STORED", "Body", "Field", "read", "stored_values", "values"]
