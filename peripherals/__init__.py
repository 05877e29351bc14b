"""Drivers for what is plugged into a station, each beside a simulator of the same shape."""
