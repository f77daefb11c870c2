"""The status page: server-rendered pages (pages), what a signed-in person can do (actions),
and how people sign in (auth), with the templates and static files they use.

May import web's shared modules and the layers below; not web.api.
"""
