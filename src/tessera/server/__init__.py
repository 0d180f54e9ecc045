"""The Tessera server: a Starlette app with pages, a JSON API and health checks."""
