"""The console's composition root: build (config, store, model), connect (ingest), serve (web),
and stop in reverse when uvicorn returns on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence

import uvicorn
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from centre import figures
from centre.admin import Admin
from centre.alert_pages import AlertPages
from centre.alerts import Alerts
from centre.auth import Guard
from centre.config import CentreConfig
from centre.ingest import Ingest
from centre.live import LiveHub
from centre.media_ingest import MediaIngest
from centre.media_web import MediaWeb
from centre.model import CountyModel
from centre.report_pages import ReportPages
from centre.reports import Reports
from centre.store import open_store
from centre.web import Console
from centre.webstore import WebStore

log = logging.getLogger("yimen.centre")


def web_app(
    config: CentreConfig,
    model: CountyModel,
    ingest: Ingest,
    live: LiveHub,
    guard: Guard,
    alerts: Alerts,
    reports: WebStore,
    extra: Sequence[BaseRoute] = (),
) -> ASGIApp:
    """The whole web side behind its gate: the live page, media and live view, and the pages of
    the people, reports and alerts. Reports get a connection of their own (`reports`): a month
    over a large county takes a while, and every request's session check must not wait behind it."""
    routes = [
        *MediaWeb(config).routes(),
        *live.routes(),
        *Admin(guard).routes(),
        *ReportPages(Reports(reports), guard).routes(),
        *AlertPages(alerts, guard).routes(),
        *extra,  # over-the-air rollouts, where configured
    ]
    return Console(model, ingest, config.media_dir, figures.FiguresReader(config.store), guard).app(routes)


def run(config: CentreConfig) -> int:
    """`yimen centre`: the console in the foreground until SIGTERM/SIGINT."""
    store = open_store(config.store)
    model = CountyModel(config.county, config.name)
    ingest = Ingest(config, model, store)
    figures.create(store)
    ingest.on_new_event.append(lambda e: figures.record(store, e))
    media = MediaIngest(config, config.console)
    ingest.on_new_event.append(media.on_event)
    live = LiveHub(config, ingest, config.console)
    db = WebStore.open(config.store)  # the web side's own connection: accounts, audit
    reports = WebStore.open(config.store)
    guard = Guard(db, config.townships, config.web.session_s, config.web.cookie_secure)
    alerts = Alerts(config.alerts, config.county, model)
    ingest.on_new_event.append(alerts.offer)
    ingest.on_loss.append(lambda sid, lost: alerts.offer((sid, lost)))
    log.info(
        "console for county %s: broker %s:%d (%d worker%s%s), store %s, page %s://%s:%d/",
        config.county,
        config.broker.host,
        config.broker.port,
        config.ingest.workers,
        "s" if config.ingest.workers > 1 else "",
        ", shared subscription" if config.ingest.shared else "",
        "PostgreSQL" if config.store.dsn else config.store.path,
        "https" if config.web.tls_cert else "http",
        config.web.host,
        config.web.port,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT and then raises the signal again for the handler
    # it found: a quiet one here, so that the stop below still runs instead of the default death.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    alerts.start()
    media.start()
    ingest.start()
    live.start()
    rollouts, rollout_routes = None, []
    if config.rollout is not None:
        from centre.rollout import Rollouts, routes

        rollouts = Rollouts(config.broker, config.county, config.rollout.releases, config.rollout.state).start()
        rollout_routes = routes(rollouts)
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                web_app(config, model, ingest, live, guard, alerts, reports, rollout_routes),
                host=config.web.host,
                port=config.web.port,
                ssl_certfile=config.web.tls_cert,
                ssl_keyfile=config.web.tls_key,
                log_level="warning",
                timeout_graceful_shutdown=2,
            )
        )
        server.run()
    finally:
        if rollouts is not None:
            rollouts.stop()
        live.stop()
        ingest.stop()
        media.stop()
        alerts.stop()
        reports.close()
        db.close()
        store.close()
    return 0
