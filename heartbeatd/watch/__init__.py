"""Watching deadlines: the monitor that arms each check on the timer wheel and flips it when
its ping does not come, and heartbeatd's watch on itself (self-pings, its own downtime).

May import core, store and notify; nothing above it (web, daemon, cli) may be imported here.
"""
