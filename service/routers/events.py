"""A job's event stream: a JSON page after a cursor, or live server-sent events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from service.deps import JobDep, PageDep, SettingsDep, StoresDep
from service.schemas import EventPage, ProblemOut
from service.sse import job_event_stream
from thaw.store.events import EVENT_ID

router = APIRouter(prefix="/v1/jobs", tags=["events"])

SSE_MEDIA_TYPE = "text/event-stream"
PROBLEM = {"model": ProblemOut, "content": {"application/problem+json": {}}}


def wants_stream(accept: str | None) -> bool:
    return bool(accept) and SSE_MEDIA_TYPE in accept.lower()


@router.get(
    "/{job_id}/events",
    response_model=EventPage,
    summary="Job events",
    description="Oldest first after `?after=`. With `Accept: text/event-stream`, a live stream "
    "(`id`, `event`, `data` per event; `Last-Event-ID` resumes) that ends when the job is "
    "terminal.",
    responses={
        200: {"content": {SSE_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        404: PROBLEM,
        422: PROBLEM,
    },
)
def get_events(
    job: JobDep,
    stores: StoresDep,
    settings: SettingsDep,
    page: PageDep,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> Any:
    after = page.after
    if wants_stream(accept):
        if after is None and last_event_id and EVENT_ID.match(last_event_id):
            after = last_event_id
        if after is not None:
            stores.events.read(job.id, after, 1)
        return StreamingResponse(
            job_event_stream(stores, job.id, after, settings.sse_keepalive_seconds),
            media_type=SSE_MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = stores.events.read(job.id, after, page.limit + 1)
    return {
        "data": [e.to_dict() for e in events[: page.limit]],
        "has_more": len(events) > page.limit,
    }
