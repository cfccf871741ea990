"""A fork server for the mutation runs: PyTorch, NumPy and pytest are imported once; each test
run is a fresh fork that imports onebit from disk (the mutated source) and runs pytest.

Importing torch costs most of a short test run's CPU time; mutmut starts one test run per mutant,
so ``run.py`` starts this server once per module and gives mutmut the client as its runner:

    python tests/mutation/forkserver.py serve SOCKET          # the server (run.py starts it)
    python tests/mutation/forkserver.py run SOCKET PYTEST_ARGS...  # one test run; pytest's exit code

The server never imports onebit, so every fork sees the file mutmut has just written. A run that
outlives its timeout is killed (exit code 124), as is a run whose client went away.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

TIMEOUT_S = 600


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the server exits (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def serve(path: str) -> None:
    import numpy  # noqa: F401  (imported once, shared by every fork)
    import pytest  # noqa: F401
    import torch  # noqa: F401

    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    print(f"fork server ready on {path}", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            request = json.loads(conn.makefile("r").readline())
            if request.get("stop"):
                break
            pid = os.fork()
            if pid == 0:  # the child: a fresh import of onebit, one pytest run
                srv.close()
                _die_with_parent()
                os.chdir(request["cwd"])
                sys.path[:0] = [p for p in request.get("sys_path", []) if p not in sys.path]
                signal.alarm(int(request.get("timeout", TIMEOUT_S)))
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                import pytest as _pytest

                code = _pytest.main(request["args"])
                os._exit(int(code))
            # the parent: wait for the child, or kill it when the client hangs up
            conn.settimeout(0.5)
            code = None
            while code is None:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    if code < 0:  # killed by a signal (the alarm: a timeout)
                        code = 124
                    break
                try:
                    if conn.recv(1) == b"":
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        code = 124
                except socket.timeout:
                    pass
            try:
                conn.sendall(f"{code}\n".encode())
            except OSError:
                pass
    srv.close()
    os.unlink(path)


def run(path: str, args: list[str]) -> int:
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(path)
    cli.sendall((json.dumps({"args": args, "cwd": os.getcwd()}) + "\n").encode())
    reply = cli.makefile("r").readline().strip()
    return int(reply) if reply else 124


def stop(path: str) -> None:
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(path)
    cli.sendall(b'{"stop": true}\n')
    cli.close()


if __name__ == "__main__":
    cmd, sock = sys.argv[1], sys.argv[2]
    if cmd == "serve":
        serve(sock)
    elif cmd == "stop":
        stop(sock)
    else:
        sys.exit(run(sock, sys.argv[3:]))
