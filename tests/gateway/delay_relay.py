"""A TCP relay that holds every chunk for a fixed time each way: a far-away link, where ``tc netem``
is not available (this kernel has no netem qdisc).

    python -m tests.gateway.delay_relay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT ONE_WAY_DELAY_S

Each direction of each connection is a queue of (due time, bytes): bytes keep their order and arrive
``ONE_WAY_DELAY_S`` after they were read, so a round trip through it takes twice that. An end of
stream is passed on after the same delay. It prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))  # the link's delay, not a timeout
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay_s, data))
    except (ConnectionError, OSError):
        delivering.cancel()  # the link broke: what was on its way is lost, as on a real one
        return
    queue.put_nowait((loop.time() + delay_s, b""))
    with contextlib.suppress(ConnectionError, OSError):
        await delivering


async def relay(listen: tuple[str, int], target: tuple[str, int], delay_s: float) -> None:
    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                pump(client_reader, upstream_writer, delay_s), pump(upstream_reader, client_writer, delay_s)
            )
        finally:
            client_writer.close()
            upstream_writer.close()

    server = await asyncio.start_server(connected, *listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    host, port, target_host, target_port, delay_s = sys.argv[1:6]
    asyncio.run(relay((host, int(port)), (target_host, int(target_port)), float(delay_s)))


if __name__ == "__main__":
    main()
