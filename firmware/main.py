"""MicroPython runs main.py at boot: undo a firmware update that did not come back, then run."""

import fwfiles

fwfiles.boot_check()
try:
    import app

    app.main()
except Exception:
    if not fwfiles.restore():  # not a fresh update that failed: fail as before
        raise
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        raise SystemExit(1) from None  # the unix port (tests): the "power supply" starts it again
