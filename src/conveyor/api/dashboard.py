"""The web dashboard: server-rendered pages over the admin facade, with a session-cookie login.

Pages are plain GETs that change nothing; every action is a POST form carrying the session's
CSRF token, checked together with ``Origin``/``Sec-Fetch-Site`` (see ``auth.py``), and answered
with a 303 back to the page it came from. Paging is bounded (``MAX_PAGE_SIZE``). ``app.js``
refreshes the live region of each page every few seconds and draws the overview chart from
``/api/v1/stats/history``; with scripts off, the pages still work (without live refresh).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .auth import SESSION_COOKIE, Authenticator, Principal
from .config import Scope
from .errors import ApiError
from .models import JOB_ID_PATTERN, QueueName, entry_view, process_view, queued_view
from .render import render
from .routes_jobs import api_state, job_detail

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_FORM_FIELDS = 2000
SET_PAGES = {"scheduled": ("schedule", "Scheduled"), "retries": ("retry", "Retries"),
             "dead": ("dead", "Dead")}
NOTICES = {"requeued": "Requeued {n} job(s).", "deleted": "Deleted {n} job(s).",
           "paused": "Queue paused.", "resumed": "Queue resumed.",
           "purged": "Deleted {n} waiting job(s).", "retried": "Job enqueued.",
           "cancelled": "Job cancelled."}
JobPath = Annotated[str, Path(pattern=JOB_ID_PATTERN)]
QueuePath = Annotated[QueueName, Path()]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Filter = Annotated[str | None, Query(max_length=200)]


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def _who(request: Request) -> Principal:
    who = _auth(request).principal(request, None)
    if who is None:
        target = "/login?" + urlencode({"next": _safe_next(request.url.path)})
        raise ApiError(303, "login", "log in first", headers={"Location": target})
    return who


def _safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to; anything else (``//host``, ``http:``) becomes ``default``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def _page(request: Request, who: Principal | None, template: str, **context: Any) -> HTMLResponse:
    done = request.query_params.get("done", "")
    count = request.query_params.get("n", "")
    notice = NOTICES[done].format(n=int(count) if count.isdigit() else 0) if done in NOTICES \
        else ""
    html = render(template, who=who, csrf=who.csrf if who else "", path=request.url.path,
                  notice=notice, admin=bool(who and who.scope >= Scope.ADMIN),
                  flow_nav=hasattr(type(api_state(request).inspector), "flow"), **context)
    return HTMLResponse(html)


def error_page(request: Request, status: int, message: str) -> str:
    return render("error.html", who=None, csrf="", path=request.url.path, notice="", admin=False,
                  flow_nav=False, status=status, message=message)


async def _action(request: Request) -> dict[str, list[str]]:
    """Check a dashboard POST (session, admin scope, same origin, CSRF) and parse its form."""
    who = _who(request)
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise ApiError(415, "unsupported", "dashboard actions are HTML form posts")
    body = (await request.body()).decode("utf-8", "replace")
    form = parse_qs(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    csrf = (form.get("csrf") or [""])[0]
    _auth(request).check_mutation(request, who, csrf, strict=True)
    if who.scope < Scope.ADMIN:
        raise ApiError(403, "forbidden", "this session is read-only; log in with an admin token")
    return form


def _back(form: dict[str, list[str]], default: str, done: str, n: int = 0) -> Response:
    target = _safe_next((form.get("next") or [""])[0], default)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'done': done, 'n': n})}", 303)


# --- login ---------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: Filter = None) -> HTMLResponse:
    return _page(request, None, "login.html", next=_safe_next(next), error="")


@router.post("/login")
async def login(request: Request) -> Response:
    auth = _auth(request)
    auth.check_same_origin(request)
    body = (await request.body()).decode("utf-8", "replace")
    form = parse_qs(body, max_num_fields=MAX_FORM_FIELDS)
    next_path = _safe_next((form.get("next") or [""])[0])
    token = auth.check_token((form.get("token") or [""])[0])
    if token is None:
        refused = _page(request, None, "login.html", next=next_path,
                        error="That token is not valid.")
        refused.status_code = 401
        return refused
    response = RedirectResponse(next_path, 303)
    config = api_state(request).config
    response.set_cookie(SESSION_COOKIE, auth.new_session(token), max_age=config.session_ttl_s,
                        httponly=True, samesite="strict", path="/",
                        secure=config.cookie_secure or request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = _who(request)
    body = (await request.body()).decode("utf-8", "replace")
    csrf = (parse_qs(body).get("csrf") or [""])[0]
    _auth(request).check_mutation(request, who, csrf, strict=True)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- pages ---------------------------------------------------------------------------------------
@router.get("/")
def overview(request: Request) -> HTMLResponse:
    who = _who(request)
    ins = api_state(request).inspector
    health = ins.health()
    if not health.ok:
        raise ApiError(503, "redis_unavailable", f"Redis is unreachable: {health.error}",
                       headers={"Retry-After": "5"})
    queues = ins.queues()
    return _page(request, who, "overview.html", stats=ins.stats(), queues=queues,
                 deepest=max([q.size for q in queues] + [1]), health=health,
                 processes=ins.processes())


@router.get("/queues")
def queues_page(request: Request) -> HTMLResponse:
    who = _who(request)
    queues = api_state(request).inspector.queues()
    return _page(request, who, "queues.html", queues=queues,
                 deepest=max([q.size for q in queues] + [1]))


@router.get("/queues/{name:path}")
def queue_page(name: QueuePath, request: Request, offset: Offset = 0) -> HTMLResponse:
    who = _who(request)
    st = api_state(request)
    info = next((q for q in st.inspector.queues() if q.name == name), None)
    if info is None:
        raise ApiError(404, "not_found", f"no queue named {name!r}")
    jobs = [queued_view(j, st.config.redact_keys)
            for j in st.inspector.queue_jobs(name, offset, PAGE_SIZE)]
    return _page(request, who, "queue.html", queue=info, jobs=jobs, offset=offset,
                 page_size=PAGE_SIZE, quote=quote)


@router.get("/jobs/{jid}")
def job_page(jid: JobPath, request: Request) -> HTMLResponse:
    who = _who(request)
    st = api_state(request)
    detail = job_detail(st, jid)
    events = [(label, getattr(detail, key)) for key, label in (
        ("created_at", "created"), ("enqueued_at", "enqueued"), ("scheduled_at", "scheduled for"),
        ("started_at", "started"), ("finished_at", "finished"), ("retry_at", "retry at"))]
    deferral = _deferral(st.inspector, jid)
    if deferral is not None:
        events += [("deferred", deferral.deferred_at), ("admitted", deferral.admitted_at)]
    timeline = sorted(((label, when) for label, when in events if when), key=lambda e: e[1])
    return _page(request, who, "job.html", job=detail, timeline=timeline, deferral=deferral)


def _deferral(inspector: Any, jid: str) -> Any:
    """What flow control did to the job (None without flow control or a status record)."""
    if not hasattr(type(inspector), "flow"):
        return None
    from ..errors import JobNotFound

    try:
        return inspector.flow.deferral(jid)
    except JobNotFound:
        return None


@router.get("/workers")
def workers_page(request: Request) -> HTMLResponse:
    who = _who(request)
    st = api_state(request)
    procs = [process_view(p, st.config.redact_keys, getattr(p, "executors", None))
             for p in st.inspector.processes()]
    return _page(request, who, "workers.html", processes=procs)


def _set_page(path: str, set_name: str, title: str) -> None:
    def page(request: Request, offset: Offset = 0, type: Filter = None,
             queue: Filter = None, limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] =
             PAGE_SIZE) -> HTMLResponse:
        who = _who(request)
        st = api_state(request)
        entries = [entry_view(e, st.config.redact_keys) for e in st.inspector.entries(
            set_name, offset, limit, name=type or None, queue=queue or None)]
        return _page(request, who, "set.html", title=title, set_path=path, entries=entries,
                     offset=offset, limit=limit, type=type or "", queue=queue or "",
                     total=st.inspector.set_size(set_name))

    async def requeue(request: Request) -> Response:
        form = await _action(request)
        ids = None if form.get("all") else form.get("job_id", [])
        n = await run_in_threadpool(api_state(request).inspector.requeue, set_name, ids)
        return _back(form, f"/{path}", "requeued", n)

    async def delete(request: Request) -> Response:
        form = await _action(request)
        ids = None if form.get("all") else form.get("job_id", [])
        n = await run_in_threadpool(api_state(request).inspector.delete, set_name, ids)
        return _back(form, f"/{path}", "deleted", n)

    router.add_api_route(f"/{path}", page, methods=["GET"], name=f"{path}_page")
    router.add_api_route(f"/{path}/requeue", requeue, methods=["POST"], name=f"{path}_requeue")
    router.add_api_route(f"/{path}/delete", delete, methods=["POST"], name=f"{path}_delete")


for _path, (_set, _title) in SET_PAGES.items():
    _set_page(_path, _set, _title)


# --- actions -------------------------------------------------------------------------------------
QUEUE_ACTIONS = {"pause": "paused", "resume": "resumed", "purge": "purged"}
JOB_ACTIONS = {"retry": ("retry_now", "retried"), "cancel": ("cancel", "cancelled")}


def _queue_action(action: str, done: str) -> None:
    async def act(name: QueuePath, request: Request) -> Response:
        form = await _action(request)
        ins = api_state(request).inspector
        if name not in await run_in_threadpool(ins.queue_names):
            raise ApiError(404, "not_found", f"no queue named {name!r}")
        n = await run_in_threadpool(getattr(ins, action), name)
        return _back(form, f"/queues/{quote(name)}", done, n if isinstance(n, int) else 0)

    router.add_api_route(f"/queues/{{name:path}}/{action}", act, methods=["POST"],
                         name=f"queue_{action}")


def _job_action(action: str, method: str, done: str) -> None:
    async def act(jid: JobPath, request: Request) -> Response:
        form = await _action(request)
        await run_in_threadpool(getattr(api_state(request).inspector, method), jid)
        return _back(form, f"/jobs/{jid}", done)

    router.add_api_route(f"/jobs/{{jid}}/{action}", act, methods=["POST"], name=f"job_{action}")


for _action_name, _done in QUEUE_ACTIONS.items():
    _queue_action(_action_name, _done)
for _action_name, (_method, _done) in JOB_ACTIONS.items():
    _job_action(_action_name, _method, _done)
