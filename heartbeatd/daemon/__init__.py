"""The process around the app: the HTTP runner and its timeouts, reloads on SIGHUP, systemd's
notify protocol and watchdog, and logging.

May import every layer below (web, watch, notify, store, core); only cli imports it.
"""
