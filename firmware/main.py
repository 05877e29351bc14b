"""MicroPython runs main.py at boot."""

import app

app.main()
