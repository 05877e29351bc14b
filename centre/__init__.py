"""The county console: every station of a county, live, in one web page.

Ingest (ingest.py) takes what the stations publish, stores each event once (store.py: SQLite,
or PostgreSQL for a county that outgrows a file), follows each station's seqs (tracker.py) and
asks for a replay when a gap stays open; the day's picture (model.py) is what the web page
(web.py) shows. app.py builds and starts them; fleet.py simulates stations for the demo,
the tests and the load test. The people at the county: accounts.py (logins, roles, townships),
auth.py (the one gate every request passes), audit.py (who did what, append-only), reports.py
(the appraisal, from the store), alerts.py (rules, the page and a chat webhook); their pages
in admin.py, report_pages.py and alert_pages.py.
"""
