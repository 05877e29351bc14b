"""The serial window-unit driver against the real firmware over pseudo-terminals."""
