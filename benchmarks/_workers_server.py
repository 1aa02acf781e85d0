"""A loopback HTTP/1.1 server with a fixed number of workers: the overload benchmark's leaf.

``python -m benchmarks._workers_server PORT_FILE WORKERS MEDIAN SIGMA``: every request waits
for one of ``WORKERS`` workers (FIFO), holds it for a lognormal service time (median ``MEDIAN``
seconds, shape ``SIGMA``; a sleep, so the machine's cores stay free for the client), then gets
``200 ok``. Past capacity the queue, and so the latency, grows without bound, as a database's
does; a request whose client gave up is still served (as a database finishes a query whose
caller hung up). Keep-alive; writes its port to PORT_FILE and serves until killed.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys

from benchmarks._server import RESPONSE, publish


class _Worked(asyncio.Protocol):
    jobs: asyncio.Queue[_Worked]  # connections with a request waiting for a worker, FIFO
    median: float
    sigma: float
    rng = random.Random(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""
        self.busy = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end >= 0 and not self.busy:
            self.buffer = self.buffer[end + 4 :]  # GETs only: no body
            self.busy = True
            self.jobs.put_nowait(self)

    def answer(self) -> None:
        """A worker finished this connection's request."""
        self.busy = False
        if not self.transport.is_closing():
            self.transport.write(RESPONSE)
        if self.buffer.find(b"\r\n\r\n") >= 0:  # a request that came while we worked
            self.data_received(b"")


async def _work() -> None:
    """One worker: take the oldest waiting request, hold it for a service time, answer."""
    while True:
        connection = await _Worked.jobs.get()
        await asyncio.sleep(_Worked.median * math.exp(_Worked.sigma * _Worked.rng.gauss(0.0, 1.0)))
        connection.answer()


async def _serve(port_file: str, workers: int, median: float, sigma: float) -> None:
    _Worked.jobs = asyncio.Queue()
    _Worked.median, _Worked.sigma = median, sigma
    pool = [asyncio.create_task(_work()) for _ in range(workers)]
    server = await asyncio.get_running_loop().create_server(_Worked, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    publish(port_file, port)
    await server.serve_forever()
    del pool


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
