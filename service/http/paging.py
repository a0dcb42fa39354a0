"""``?limit=`` and ``?after=`` of a list endpoint, with the cursor's format in the schema."""

# No postponed annotations: FastAPI reads the closure's parameter annotations at runtime.

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from service.http.problems import Problem
from thaw.settings import Settings


@dataclass(frozen=True)
class Page:
    limit: int
    after: str | None


def paging(cursor_pattern: str, example: str, max_length: int, rule: str = "") -> Any:
    """A dependency type for a list whose cursor is an id matching ``cursor_pattern``."""

    def page(
        request: Request,
        limit: Annotated[
            int | None, Query(ge=1, description="Page size; at most THAW_PAGE_SIZE_MAX.")
        ] = None,
        after: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=max_length,
                description=f"The last id of the previous page, such as {example}.{rule}",
                # The store checks the format (422 invalid_cursor, with the expected form).
                json_schema_extra={"pattern": cursor_pattern},
            ),
        ] = None,
    ) -> Page:
        settings: Settings = request.app.state.settings
        if limit is not None and limit > settings.page_size_max:
            raise Problem(
                422,
                f"limit: must be at most {settings.page_size_max}",
                code="invalid_request",
                title="Invalid request",
                errors=[
                    {
                        "loc": "limit",
                        "message": f"must be at most {settings.page_size_max}",
                        "hint": f"ask for {settings.page_size_max} or fewer and page with ?after=",
                        "closest": [],
                    }
                ],
            )
        return Page(limit or min(settings.page_size_default, settings.page_size_max), after)

    return Annotated[Page, Depends(page)]
