"""At boot on CircuitPython: a second USB CDC interface for the link, so the REPL keeps its own."""

try:
    import usb_cdc

    usb_cdc.enable(console=True, data=True)
except ImportError:  # MicroPython: the link shares the REPL's port (see app.main)
    pass
