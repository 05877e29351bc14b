"""Station logic: the queue, ratings tied to the service they rate, and clerks at windows.

`service.Station` is the one entry point drivers use; the other modules are its parts, each
with one job (see the docstring of each). Kept free of imports here so that edge/config.py can
read `edge.station.config` without loading the owner thread and the outbox.
"""
