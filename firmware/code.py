"""CircuitPython runs code.py at boot: undo a firmware update that did not come back, then run."""

import fwfiles

fwfiles.boot_check()
try:
    import app

    app.main()
except Exception:
    if not fwfiles.restore():
        raise
    import microcontroller

    microcontroller.reset()
