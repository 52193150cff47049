"""The moto server child process: ``python -m aiosagemaker.local._moto_child --port 0``.

Prints the bound port on one line, then serves until stdin reaches end of file: the parent holds
the other end of that pipe, so this process stops when the parent exits, however it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

__all__ = ["serve"]


def serve(port: int) -> None:
    from moto.server import ThreadedMotoServer

    from ._moto_patches import apply

    apply()

    # werkzeug logs every request at INFO; thousands of lines per test otherwise.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.buffer.read()
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)
