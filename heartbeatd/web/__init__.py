"""HTTP: the aiohttp app and every app key, the ping URLs and other monitors' ping forms, the
rate limits and body pacing that keep strangers from stalling it, badges, /metrics, and who may
read what (exposure). `ui` is the status page, `api` the management API.

May import core, store, notify and watch; never daemon or cli.
"""
