#!/usr/bin/env python3
"""A small HTTP CONNECT proxy for the NAT lab (testnet/natlab.sh --proxy),
standing in for a hospital's web proxy: it opens tunnels to port 443 only,
answers anything else with 403, asks for Basic credentials (407) when given
some, and copies bytes both ways.

Usage: connect_proxy.py LISTEN_IP PORT [USER:PASSWORD]
"""

import asyncio
import base64
import sys

CREDENTIALS = None

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
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if CREDENTIALS is not None:
        wanted = "proxy-authorization: basic " + base64.b64encode(CREDENTIALS.encode()).decode()
        if not any(line.lower() == wanted.lower() for line in lines[1:]):
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            await writer.drain()
            writer.close()
            return
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
    if len(sys.argv) > 3:
        CREDENTIALS = sys.argv[3]
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
