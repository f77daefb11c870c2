"""A webhook receiver for the benchmarks, in a process of its own: one line per POST, the time
it arrived. Kept out of the benchmark's process so its work does not skew what that measures.

    python benchmarks/sink.py PORT FILE
"""

from __future__ import annotations

import sys
import time

from aiohttp import web


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    out = open(path, "a", buffering=1)  # noqa: SIM115  (open for the process's lifetime)

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        out.write(f"{time.time()}\n")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
