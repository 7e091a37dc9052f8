"""ws_echo.py - a WebSocket echo upstream for the gateway tests (python3-websockets).

Listens on 127.0.0.1:$PORT and sends every message back as it came (text as
text, binary as binary), up to 16 MiB a message. Stdout: one line
"ws_echo: listening on 127.0.0.1:PORT" once it accepts.
"""
import asyncio
import os

import websockets


async def echo(ws, path=None):
    async for message in ws:
        await ws.send(message)


async def main():
    port = int(os.environ["PORT"])
    async with websockets.serve(echo, "127.0.0.1", port, max_size=16 * 1024 * 1024):
        print("ws_echo: listening on 127.0.0.1:%d" % port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
