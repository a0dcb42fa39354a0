"""Processes that serve the API: ``thaw api`` (uvicorn) and ``thaw up`` (Redis, a worker
and the API as children of one command)."""
