"""A real PostgreSQL server for the tests: Debian's binaries (`.ci/run` installs the `postgresql` package where it
is missing), a fresh cluster in a temporary folder, listening on 127.0.0.1 only, with a password, stopped at the end.

PostgreSQL refuses to run as root, so under root (CI containers) the server runs as `nobody`.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "s3cret-Pw-4-tests"     # what no output may show


def server_binaries() -> Path | None:
    """The folder with initdb and pg_ctl, or None where PostgreSQL's server is not installed."""
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(folders[-1]) if folders and Path(folders[-1], "initdb").exists() else None


def _as_unprivileged() -> tuple[Callable[[], None] | None, int, int]:
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")

    def demote() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return demote, nobody.pw_uid, nobody.pw_gid


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the SQLAlchemy URL of an empty database `nas` owned by user `nas`."""
    binaries = server_binaries()
    assert binaries is not None
    demote, uid, gid = _as_unprivileged()
    root = Path(tempfile.mkdtemp(prefix="nas-pg-", dir="/tmp"))    # not under pytest's 0700 folders: `nobody` reads it
    os.chown(root, uid, gid)
    (root / "pw").write_text(PASSWORD + "\n")
    os.chown(root / "pw", uid, gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGPASSWORD": PASSWORD}   # createdb asks for it

    def run(*args: str) -> None:
        subprocess.run(args, check=True, preexec_fn=demote, env=env, cwd=root, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)

    try:
        run(str(binaries / "initdb"), "-D", str(root / "data"), "-U", "nas", f"--pwfile={root / 'pw'}",
            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C")
        run(str(binaries / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start")
        run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "nas", "nas")
        yield f"postgresql://nas:{PASSWORD}@127.0.0.1:{port}/nas"
    finally:
        subprocess.run([str(binaries / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                       preexec_fn=demote, env=env, cwd=root, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
