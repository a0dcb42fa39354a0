"""A job's event stream: a JSON page after a cursor, or live server-sent events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from service.api.deps import JobDep, SettingsDep, StoresDep, TenantDep
from service.api.openapi import V1_RESPONSES, problem_responses
from service.api.schemas import EventOut, EventPage
from service.api.sse import StreamSlots, job_event_stream
from service.http.finite import finite
from service.http.paging import paging
from service.http.problems import Problem
from thaw.store.events import EVENT_ID, valid_event_id

router = APIRouter(prefix="/v1/jobs", tags=["events"], responses=V1_RESPONSES)

SSE_MEDIA_TYPE = "text/event-stream"
EventPageDep = paging(
    EVENT_ID.pattern, "1700000000000-0", 41, " Each part is at most 18446744073709551615."
)


def _checked_last_event_id(value: str) -> str:
    """``Last-Event-ID`` follows ``?after=``: an id that is not an event id is a 422."""
    if valid_event_id(value.strip()):
        return value.strip()
    message = "is not an event id such as 1700000000000-0 (each part at most 18446744073709551615)"
    raise Problem(
        422,
        f"Last-Event-ID: {message}",
        code="invalid_cursor",
        title="Invalid request",
        errors=[
            {
                "loc": "Last-Event-ID",
                "message": message,
                "hint": "send the id of the last event received, or no Last-Event-ID to "
                "replay from the start",
                "closest": [],
            }
        ],
    )


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
        **problem_responses(
            404,
            422,
            e429="Too many event streams open for this key (THAW_SSE_MAX_STREAMS_PER_TENANT).",
        ),
    },
)
def get_events(
    request: Request,
    job: JobDep,
    stores: StoresDep,
    settings: SettingsDep,
    tenant: TenantDep,
    page: EventPageDep,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[
        str | None,
        Header(description="Resume a stream after this event id; the same rule as ?after=."),
    ] = None,
) -> StreamingResponse | EventPage:
    after = page.after
    if wants_stream(accept):
        if after is None and last_event_id:
            after = _checked_last_event_id(last_event_id)
        if after is not None:
            stores.events.read(job.id, after, 1)
        slots: StreamSlots = request.app.state.stream_slots
        slot = slots.take(tenant)
        return StreamingResponse(
            job_event_stream(
                request.app.state.aredis, job.id, after, settings.sse_keepalive_seconds, slot
            ),
            media_type=SSE_MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = stores.events.read(job.id, after, page.limit + 1)
    return EventPage(
        data=[EventOut.model_validate(finite(e.to_dict())) for e in events[: page.limit]],
        has_more=len(events) > page.limit,
    )
