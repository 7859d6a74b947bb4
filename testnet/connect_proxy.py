#!/usr/bin/env python3
"""A small HTTP CONNECT proxy for the NAT lab (testnet/natlab.sh --proxy),
standing in for a hospital's web proxy: it opens tunnels to port 443 only,
answers anything else with 403, and copies bytes both ways.

Usage: connect_proxy.py LISTEN_IP PORT
"""

import asyncio
import sys

ALLOWED_PORT = 443


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    host, _, port = parts[1].rpartition(":") if len(parts) == 3 else ("", "", "")
    if parts[0] != "CONNECT" or not port.isdigit() or int(port) != ALLOWED_PORT:
        writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    try:
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except OSError:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def main(ip, port):
    server = await asyncio.start_server(handle, ip, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
