"""A TCP bridge between the host's loopback and a network namespace's, that a test can
cut and heal: the network partition of one store instance.

    python -m tests.faults.proxy NETNS ROUTE...

ROUTE is `in:PORT` (listen on PORT inside the namespace, forward to the host's PORT: a
broker or a peer), `out:PORT` (listen on the host's PORT, forward to PORT inside: the
isolated instance as its peers see it) or `client:HOST_PORT:PORT` (the instance as its
own clients see it, never cut). Commands on stdin, each answered `ok <command>`:
`partition` stops forwarding on every `in`/`out` route and holds connections silently
(no RST: data waits, new connections are accepted and wait, as behind a real partition);
`heal` forwards again, held data included.

A socket belongs to the network namespace of the thread that created it, so this one
process listens and connects on both sides by switching namespaces (setns) only around
socket creation.
"""

import asyncio
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def make_socket(netns, make):
    """`make()` run with this thread inside `netns` (a path), or in the host's when
    None."""
    if netns is None:
        return make()
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return make()
        finally:
            _setns(host)
    finally:
        os.close(host)
        os.close(target)


class Route:
    def __init__(self, listen_ns, listen_port, target_ns, target_port, gate):
        self.listen_ns, self.listen_port = listen_ns, listen_port
        self.target_ns, self.target_port = target_ns, target_port
        self.gate = gate

    async def start(self):
        listener = make_socket(
            self.listen_ns,
            lambda: socket.create_server(("127.0.0.1", self.listen_port), backlog=512),
        )
        return await asyncio.start_server(self.serve, sock=listener)

    async def serve(self, client_reader, client_writer):
        await self.gate.wait()  # a partition: the connection waits, unanswered
        upstream = make_socket(self.target_ns, socket.socket)
        upstream.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(
                upstream, ("127.0.0.1", self.target_port)
            )
        except OSError:
            upstream.close()
            client_writer.close()
            return
        reader, writer = await asyncio.open_connection(sock=upstream)
        pumps = [
            asyncio.create_task(self.pump(client_reader, writer)),
            asyncio.create_task(self.pump(reader, client_writer)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for stream in (writer, client_writer):
            stream.close()

    async def pump(self, reader, writer):
        try:
            while True:
                await self.gate.wait()
                data = await reader.read(65536)
                if not data:
                    return
                await self.gate.wait()  # data read before a cut is held, not lost
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return


def parse_routes(netns, specs, cut, always):
    routes = []
    for spec in specs:
        kind, *ports = spec.split(":")
        if kind == "in":
            routes.append(Route(netns, int(ports[0]), None, int(ports[0]), cut))
        elif kind == "out":
            routes.append(Route(None, int(ports[0]), netns, int(ports[0]), cut))
        elif kind == "client":
            routes.append(Route(None, int(ports[0]), netns, int(ports[1]), always))
        else:
            raise SystemExit(f"unknown route {spec!r}")
    return routes


async def main(netns, specs):
    cut, always = asyncio.Event(), asyncio.Event()
    cut.set()
    always.set()
    servers = [await route.start() for route in parse_routes(netns, specs, cut, always)]
    loop, commands = asyncio.get_running_loop(), asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    print("ready", flush=True)
    while True:
        command = await commands.get()
        if command == "partition":
            cut.clear()
        elif command == "heal":
            cut.set()
        elif command == "quit":
            break
        print(f"ok {command}", flush=True)
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(main(f"/var/run/netns/{sys.argv[1]}", sys.argv[2:]))
