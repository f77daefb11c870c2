"""The domain, free of I/O: clocks, durations, schedules, the check model and its state
machine, what a ping means (outcome), the timer wheel, the configuration, input bounds and one
validator per check field (fields), and the errors every layer raises.

The bottom layer: it imports nothing of heartbeatd's outside `core`, so everything above can
use it and it can be tested without a database, a server or a loop.
"""
