"""CircuitPython runs code.py at boot."""

import app

app.main()
