"""The reports on the page (/reports) and as files: JSON for the page's tables and charts, CSV
and XLSX for the county's appraisal sheet (Chinese headers; by month, station and clerk gives
one row per clerk per month). Each export is in the audit trail. A township account's reports
cover its townships' stations only; a `station` asked for outside them is refused by the gate.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from centre.auth import Guard, access, client_ip, page, user_of
from centre.reports import KEYS, STATION_LEVEL, Query, ReportError, Reports
from centre.sheet import csv_bytes, xlsx_bytes

COLUMNS = [  # (field, Chinese header): the appraisal sheet's columns, in its order
    ("month", "月份"),
    ("day", "日期"),
    ("station", "站点"),
    ("window", "窗口"),
    ("clerk", "工作人员"),
    ("item", "事项"),
    ("ratings", "评价数"),
    ("good", "好评"),
    ("bad", "差评"),
    ("good_share", "好评率"),
    ("l5", "非常满意"),
    ("l4", "满意"),
    ("l3", "基本满意"),
    ("l2", "不满意"),
    ("l1", "非常不满意"),
    ("unleveled", "未分级"),
    ("bad_with_reason", "差评有原因"),
    ("served", "办件数"),
    ("rated", "已评价办件"),
    ("unrated", "未评价办件"),
    ("wait_p50", "等待时间中位数(秒)"),
    ("wait_p90", "等待时间P90(秒)"),
    ("service_p50", "办理时间中位数(秒)"),
    ("service_p90", "办理时间P90(秒)"),
    ("overruns", "超时次数"),
    ("outages", "断线次数"),
    ("offline_s", "断线时长(秒)"),
    ("lost", "已知丢失数据"),
]


class ReportPages:
    def __init__(self, reports: Reports, guard: Guard) -> None:
        self.reports = reports
        self.guard = guard

    def _query(self, request: Request) -> Query:
        q = request.query_params
        user = user_of(request)
        stations: list[str] | None = None
        if user.scoped:
            stations = [s for s, t in self.guard.township_of.items() if t in user.townships]
        if q.get("station"):
            stations = [q["station"]]  # the gate has checked it against the caller's scope
        return Query.parse(q.get("from"), q.get("to"), q.get("by"), stations)

    @access("figures", station="station")
    async def report(self, request: Request) -> Response:
        try:
            query = self._query(request)
        except ReportError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        rows = await run_in_threadpool(self.reports.figures, query)
        bad = await run_in_threadpool(self.reports.bad_ratings, query) if request.query_params.get("bad") else []
        return JSONResponse({"by": list(query.by), "rows": rows, "bad": bad})

    @access("figures", station="station")
    async def export(self, request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "xlsx"):
            return JSONResponse({"error": "export as .csv or .xlsx"}, status_code=404)
        try:
            query = self._query(request)
        except ReportError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        rows = await run_in_threadpool(self.reports.figures, query)
        per_station = ("outages", "offline_s", "lost")
        columns = [
            (f, h)
            for f, h in COLUMNS
            if (f in query.by or f not in KEYS) and (STATION_LEVEL.issuperset(query.by) or f not in per_station)
        ]
        table = [[row.get(f) for f, _h in columns] for row in rows]
        headers = [h for _f, h in columns]
        name = f"yimen-{query.start:%Y%m%d}-{query.end:%Y%m%d}-{'-'.join(query.by)}.{fmt}"
        self.guard.audit.record(
            user_of(request).name, "export", "report", client_ip(request), format=fmt, query=str(request.url.query)
        )
        if fmt == "xlsx":
            body = await run_in_threadpool(xlsx_bytes, "评价统计", headers, table)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        else:
            body, media = csv_bytes(headers, table), "text/csv; charset=utf-8"
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/reports", page("reports.html", "figures", "评价统计", ("session.js", "chart.umd.min.js"))),
            Route("/api/report", self.report),
            Route("/api/report.{fmt:str}", self.export),
        ]
