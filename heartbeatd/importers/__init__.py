"""Turning jobs that exist elsewhere into checks: crontab lines and systemd timers.

May import core and store; the cli imports it.
"""
