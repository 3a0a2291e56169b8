"""The web page served by the ingress at `/ui/` (routes.py adds it and `GET /v1/stats` to the app; paths.py lists
the static files that load without an API key; stats.py keeps the per-stage rolling window the page shows)."""
