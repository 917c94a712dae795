"""`tune dashboard`: optuna-dashboard on a storage, reachable from this machine only unless asked otherwise.

optuna-dashboard's API has no authentication, and it changes the storage: ``DELETE /api/studies/ID`` deletes a
study. So the server listens on a loopback address, and answers a request only when its ``Host`` header names
this machine (``127.0.0.1``, ``localhost``, ``[::1]``, with or without the port): a web page elsewhere that
points its own host name at 127.0.0.1 (DNS rebinding) reaches the port but is refused. A non-loopback
``--host`` needs ``--expose-unauthenticated-api``, which serves the API to anyone who reaches the port.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Iterable

from studies.errors import UserInputError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
EXPOSE_FLAG = "--expose-unauthenticated-api"


class DashboardError(UserInputError):
    """A dashboard that would be served where it must not be; the message says how."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_host(host: str, expose: bool) -> str:
    """``host`` once it is loopback, or exposing the API was asked for."""
    if not expose and not is_loopback(host):
        raise DashboardError(
            f"--host {host} is not a loopback address: optuna-dashboard's API has no authentication and can delete "
            f"studies; pass {EXPOSE_FLAG} to serve it there anyway"
        )
    return host


def checked_port(host: str, port: int) -> int:
    """``port`` once ``host`` can listen on it, so that a port in use is one line before anything is served."""
    address = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a port closed moments ago is free
        try:
            probe.bind((address, port))
        except (OSError, OverflowError) as exc:  # in use, not this machine's address, or no port number at all
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DashboardError(f"cannot serve on {host}:{port}: {reason}; pass --port with another port") from exc
    return port


def local_hosts_only(app: Callable, host: str, port: int) -> Callable:
    """``app`` answering only requests whose ``Host`` header names this machine: 403 for any other (DNS rebinding)."""
    bound = f"[{host.strip('[]')}]" if ":" in host else host
    allowed = {name.lower() for base in (*LOOPBACK_NAMES, bound) for name in (base, f"{base}:{port}")}

    def guarded(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("HTTP_HOST", "").lower() not in allowed:
            body = b"tune dashboard: refused: the Host header does not name this machine; open http://127.0.0.1:PORT/\n"
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return guarded


def serve(storage, host: str, port: int, expose: bool = False, artifacts=None) -> None:
    """Serve optuna-dashboard on ``storage`` until Ctrl-C, with the Host check unless the API is exposed;
    ``artifacts`` (an Optuna artifact store) lets it list and download each trial's best-epoch weights."""
    import bottle
    from optuna_dashboard import wsgi

    checked_host(host, expose)
    app = wsgi(storage, artifact_store=artifacts)
    # Exposed, it is reached by whatever name the network gives this machine: the Host header proves nothing there.
    bottle.run(app=app if expose else local_hosts_only(app, host, port), host=host, port=port)
