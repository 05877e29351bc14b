"""The console's composition root: build (config, store, model), connect (ingest), serve (web),
and stop in reverse when uvicorn returns on SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal

import uvicorn

from centre import figures
from centre.config import CentreConfig
from centre.ingest import Ingest
from centre.live import LiveHub
from centre.media_ingest import MediaIngest
from centre.media_web import MediaWeb
from centre.model import CountyModel
from centre.store import open_store
from centre.web import Console

log = logging.getLogger("yimen.centre")


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
    log.info(
        "console for county %s: broker %s:%d (%d worker%s%s), store %s, page http://%s:%d/",
        config.county,
        config.broker.host,
        config.broker.port,
        config.ingest.workers,
        "s" if config.ingest.workers > 1 else "",
        ", shared subscription" if config.ingest.shared else "",
        "PostgreSQL" if config.store.dsn else config.store.path,
        config.web.host,
        config.web.port,
    )
    # uvicorn stops gracefully on SIGTERM/SIGINT and then raises the signal again for the handler
    # it found: a quiet one here, so that the stop below still runs instead of the default death.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    media.start()
    ingest.start()
    live.start()
    rollouts = None
    if config.rollout is not None:
        from centre.rollout import Rollouts, routes

        rollouts = Rollouts(config.broker, config.county, config.rollout.releases, config.rollout.state).start()
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                Console(model, ingest, config.media_dir, figures.FiguresReader(config.store)).app(
                    [*MediaWeb(config).routes(), *live.routes(), *(routes(rollouts) if rollouts else [])]
                ),
                host=config.web.host,
                port=config.web.port,
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
        store.close()
    return 0
