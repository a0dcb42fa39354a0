"""Pages served by the API itself: the jobs list, a job, the plan editor, and the API docs.

The pages are static HTML and JavaScript that call the same JSON API as any client;
nothing here reads the stores."""

from service.api.pages.install import install_pages

__all__ = ["install_pages"]
