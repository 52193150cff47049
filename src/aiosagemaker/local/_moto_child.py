"""The moto server child process: ``python -m aiosagemaker.local._moto_child --port 0``.

Prints the bound port on one line, then serves until stdin reaches end of file: the parent holds
the other end of that pipe, so this process stops when the parent exits, however it exits.

It runs werkzeug's threaded server itself (as moto's ``ThreadedMotoServer`` does) rather than
through that class, to put :class:`~._s3_faults.S3FaultMiddleware` in front of moto's app and to
answer the middleware's :class:`~._s3_faults.ResetConnection` with a reset; the control token
comes from the parent in :data:`~._s3_faults.CONTROL_TOKEN_ENV`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from werkzeug.serving import WSGIRequestHandler

__all__ = ["serve"]


def _handler_class() -> type[WSGIRequestHandler]:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    from ._s3_faults import ResetConnection, reset_connection

    class Handler(MotoRequestHandler):
        def connection_dropped(
            self, error: BaseException, environ: dict[str, object] | None = None
        ) -> None:
            if isinstance(error, ResetConnection):
                # Nothing was written: no keep-alive, and no FIN before the RST.
                self.close_connection = True
                reset_connection(self.connection)
            super().connection_dropped(error, environ)

    return Handler


def serve(port: int) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from ._moto_patches import apply
    from ._s3_faults import CONTROL_TOKEN_ENV, S3FaultMiddleware

    apply()

    # werkzeug logs every request at INFO; thousands of lines per test otherwise.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = S3FaultMiddleware(
        DomainDispatcherApplication(create_backend_app), os.environ.get(CONTROL_TOKEN_ENV)
    )
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_handler_class())
    thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
    thread.start()
    print(server.server_port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.buffer.read()
    server.shutdown()
    thread.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)
