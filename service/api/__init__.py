"""The Thaw API: the app factory, request dependencies, the response schemas and one router
per resource."""
