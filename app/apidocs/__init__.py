"""The API's own documentation page (Swagger UI) at /api/docs."""
