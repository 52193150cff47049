"""The moto server child process: ``python -m aiosagemaker.local._moto_child --port 0``.

Prints the bound port on one line, then serves until stdin reaches end of file: the parent holds
the other end of that pipe, so this process stops when the parent exits, however it exits.

It runs werkzeug's threaded server itself (as moto's ``ThreadedMotoServer`` does) rather than
through that class, to put :class:`~._s3_faults.S3FaultMiddleware` in front of moto's app and to
answer the middleware's :class:`~._s3_faults.ResetConnection` with a reset; the control token
comes from the parent in :data:`~._s3_faults.CONTROL_TOKEN_ENV`.

Connections are kept alive, as S3's and SQS's are: werkzeug closes each after one answer, and a
new TCP connection per call cost the client about 14% of its CPU in the round-trip benchmark. To
keep the stream in step, the handler reads a request only up to its ``Content-Length`` and
:func:`_framed` keeps each answer to its own; what it cannot delimit (a chunked request, an answer
short of its length or failing midway) still closes the connection.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from werkzeug.serving import WSGIRequestHandler

__all__ = ["serve"]


#: set in the environ by :func:`_framed` when the connection must close after the response
_CLOSE = "aiosagemaker.close_connection"


def _handler_class() -> type[WSGIRequestHandler]:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.wsgi import LimitedStream

    from ._s3_faults import ResetConnection, reset_connection

    class Body(LimitedStream):
        """A request's body: reads end at its ``Content-Length``, and at a disconnect read as the
        end (no error: the handler sees the body unfinished and closes the connection)."""

        def on_disconnect(self, error: Exception | None = None) -> None:
            pass

    class Handler(MotoRequestHandler):
        # werkzeug's threaded server sets it too, but says ``Connection: close`` on every answer.
        protocol_version = "HTTP/1.1"
        keep_alive = False

        def run_wsgi(self) -> None:
            length = self.headers.get("Content-Length", "0")
            if (
                "Transfer-Encoding" in self.headers  # a body this handler does not delimit
                or not length.isdigit()
                or self.request_version != "HTTP/1.1"
            ):
                self.close_connection = True
            if self.close_connection:
                super().run_wsgi()
                return
            # werkzeug gives the app the socket's stream, and after the answer reads whatever
            # arrives there: on a kept-alive connection, the next request. This stream ends
            # where the body does.
            rfile = self.rfile
            body = Body(rfile, int(length))  # type: ignore[arg-type]
            self.rfile = body  # type: ignore[assignment]
            self.keep_alive = True
            try:
                super().run_wsgi()
            finally:
                self.rfile, self.keep_alive = rfile, False
            if not self.close_connection:  # a reset closed it
                body.exhaust()  # what the app left unread, not the next request line
                if not body.is_exhausted or self.environ.get(_CLOSE):
                    self.close_connection = True

        def send_header(self, keyword: str, value: str) -> None:
            # werkzeug sends ``Connection: close`` with every answer; a kept-alive one omits it
            # (HTTP/1.1's default), and it still goes out when the client asked to close.
            if self.keep_alive and keyword.lower() == "connection":
                return
            super().send_header(keyword, value)

        def connection_dropped(
            self, error: BaseException, environ: dict[str, object] | None = None
        ) -> None:
            if isinstance(error, ResetConnection):
                # Nothing was written: no keep-alive, and no FIN before the RST.
                self.close_connection = True
                reset_connection(self.connection)
            super().connection_dropped(error, environ)

    return Handler


def _framed(app: WSGIApplication) -> WSGIApplication:
    """``app`` with each answer kept to its framing, so that the connection can carry the next
    one: no body where HTTP has none (HEAD, 1xx, 204, 304), none past ``Content-Length``. An answer
    short of its ``Content-Length``, or whose body fails midway, sets ``environ[_CLOSE]``."""

    def framed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # The body's length, once the app starts its answer; None: any (werkzeug chunks it).
        length: list[int | None] = [None]

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            code = int(status[:3])
            given = next((v for k, v in headers if k.lower() == "content-length"), "")
            if environ["REQUEST_METHOD"] == "HEAD" or code < 200 or code in (204, 304):
                length[0] = 0
            elif given.isdigit():
                length[0] = int(given)
            return start_response(status, headers, exc_info)

        return _frame(app(environ, start), length, environ)

    return framed


def _frame(
    body: Iterable[bytes], length: list[int | None], environ: WSGIEnvironment
) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in body:
            if length[0] is not None:
                chunk = chunk[: max(length[0] - sent, 0)]
            sent += len(chunk)
            if chunk:
                yield chunk
    except BaseException:
        environ[_CLOSE] = True
        raise
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if length[0] is not None and sent < length[0]:
        environ[_CLOSE] = True


def serve(port: int) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from ._moto_patches import apply
    from ._s3_faults import CONTROL_TOKEN_ENV, S3FaultMiddleware

    apply()

    # werkzeug logs every request at INFO; thousands of lines per test otherwise.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = _framed(
        S3FaultMiddleware(
            DomainDispatcherApplication(create_backend_app), os.environ.get(CONTROL_TOKEN_ENV)
        )
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
