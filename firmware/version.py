"""The firmware's version, sent in HELLO; replaced with the other files by an update (settings.py is not)."""

FW = "2.1.0"
