"""The county console: every station of a county, live, in one web page.

Ingest (ingest.py) takes what the stations publish, stores each event once (store.py: SQLite,
or PostgreSQL for a county that outgrows a file), follows each station's seqs (tracker.py) and
asks for a replay when a gap stays open; the day's picture (model.py) is what the web page
(web.py) shows. app.py builds and starts them; fleet.py simulates stations for the demo,
the tests and the load test.
"""
