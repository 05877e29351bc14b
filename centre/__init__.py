"""The county console: every station of a county, live, in one web page.

Ingest (ingest.py) takes what the stations publish, stores each event once (store.py: SQLite,
or PostgreSQL for a county that outgrows a file), follows each station's seqs (tracker.py) and
asks for a replay when a gap stays open, checking every number a station sends first
(bounds.py); the day's figures are written beside the events and read back by the page
(figures.py), and the model (model.py) holds states, seqs and today's media events. Media
files are reassembled and kept by media.py on their own connection and thread (media_ingest.py)
and shown by media_web.py; live view reaches the page through live.py. app.py builds and starts
them; web.py serves the page; fleet.py simulates stations for the demo, the tests and the load
test; demo.py and cli.py are the `yimen demo` and `yimen centre` commands. The people at the
county: accounts.py (logins, roles, townships), auth.py (the one gate every request passes),
audit.py (who did what, append-only), reports.py (the appraisal, from the store), alerts.py
(rules, the page and a chat webhook); their pages in admin.py, report_pages.py and alert_pages.py.
"""
