"""Run pytest on a busy machine: `make test-stress` (python tests/stress.py PYTEST_ARGS...).

Starts one CPU-burning process per core this process may use (what `nproc` says),
runs `python -m pytest PYTEST_ARGS...`, and stops the burners when pytest ends,
always: on success, on failure, on Ctrl-C and on SIGTERM. A burner also stops by
itself within a fraction of a second when this wrapper is gone (even killed with
SIGKILL), so none is ever left spinning. Exits with pytest's exit code.

A test that passes on a quiet machine and fails here depends on the machine's
speed: its time limits are sized to a quiet machine (see tests/conftest.py).
STRESS_BURNERS=N sets the number of burners (default: the number of cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

# Spins until its parent (this wrapper) is gone; checks about ten times a second.
BURNER = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def start_burners(n: int) -> list[subprocess.Popen]:
    # Each in a session of its own: a Ctrl-C in the terminal reaches pytest, not them;
    # this wrapper stops them.
    return [subprocess.Popen([sys.executable, "-c", BURNER, str(os.getpid())],
                             stdin=subprocess.DEVNULL, start_new_session=True)
            for _ in range(n)]


def stop(burners: list[subprocess.Popen]) -> None:
    for proc in burners:
        if proc.poll() is None:
            proc.kill()
    for proc in burners:
        proc.wait()


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop like a Ctrl-C, through main's finally."""


def _terminate(signum, frame):
    raise Terminated


def _interrupt(pytest: subprocess.Popen | None, terminated: bool) -> int:
    """Ctrl-C: let pytest report what ran and end (a Ctrl-C in the terminal reached it
    too), ask it with SIGINT if it does not; SIGTERM: ask it at once; kill it if it hangs."""
    if pytest is None:
        return 130
    for ask in ((True,) if terminated else (False, True)):
        if ask and pytest.poll() is None:
            pytest.send_signal(signal.SIGINT)
        try:
            return pytest.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            continue
    pytest.kill()
    pytest.wait()
    return 130


def main(argv: list[str]) -> int:
    n = int(os.environ.get("STRESS_BURNERS") or cores())
    signal.signal(signal.SIGTERM, _terminate)
    burners = start_burners(n)
    pytest = None
    started = time.monotonic()
    try:
        print(f"stress: {n} CPU-burning process(es) ({', '.join(str(p.pid) for p in burners)}) "
              f"run until pytest ends", flush=True)
        pytest = subprocess.Popen([sys.executable, "-m", "pytest", *argv])
        return pytest.wait()
    except KeyboardInterrupt as exc:
        stop(burners)
        return _interrupt(pytest, isinstance(exc, Terminated))
    finally:
        stop(burners)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"stress: burners stopped after {time.monotonic() - started:.0f} s "
              f"(load average over the last minute: {load:.1f})", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
