"""Joining a Ray cluster (``--ray-address``) the same way from every command, with one-line failures.

Ray's own ``ray.init(address=...)`` retries for minutes when nothing answers at the address, printing a warning
every few seconds; here a head that does not accept a TCP connection within ``CONNECT_TIMEOUT_S`` is reported
at once, and a refusal to join (a cluster started with token authentication, say) says what to set.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from nas.errors import EnvironmentFailure, UsageError

CONNECT_TIMEOUT_S = 10


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``address``; None for the forms Ray resolves itself ("auto", "ray://..."); a malformed one
    is refused."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected HOST:PORT of a Ray head node (what `ray start "
                         "--head` prints), e.g. 10.0.0.5:6379")
    return host, int(port)


def check_reachable(address: str) -> None:
    """Refuse an address without a listening Ray head (in ``CONNECT_TIMEOUT_S`` at most)."""
    parsed = parse_address(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise EnvironmentFailure(f"--ray-address {address}: no Ray head answers there ({exc.strerror or exc}); "
                                 f"start one with `ray start --head --port={port}`, or give the address it printed"
                                 ) from None


def token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or (Path.home() / ".ray" / "auth_token").is_file()


def prepare_auth() -> None:
    """Before Ray is imported (it reads ``RAY_AUTH_MODE`` then, not at ``ray.init``): with a token at hand
    (``RAY_AUTH_TOKEN``, or ``~/.ray/auth_token``, which ``ray start`` writes), join in token mode, so a cluster
    started with ``RAY_AUTH_MODE=token`` takes this driver without the user knowing the variable. Checked here:
    a token-mode driver also joins a cluster without authentication."""
    if "RAY_AUTH_MODE" not in os.environ and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


def auth_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE") == "token":
        return "check that RAY_AUTH_TOKEN (or ~/.ray/auth_token) holds the head node's token (copy it from the head)"
    return ("if the cluster was started with RAY_AUTH_MODE=token, run nas with RAY_AUTH_MODE=token too, and the "
            "head's token in RAY_AUTH_TOKEN (or ~/.ray/auth_token)")


def join(ray: Any, address: str, **init_kwargs: Any) -> None:
    """``ray.init(address=address, ...)``, failing in one line (``prepare_auth`` has run before Ray's import)."""
    check_reachable(address)
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EnvironmentFailure(f"--ray-address {address}: could not join the Ray cluster ({first}); "
                                 f"{auth_hint()}") from None
