"""Entry of a worker process: set up signals and parent-death before the heavy imports.

The parent spawns a worker with its stop signals blocked, so none can kill it while
Python starts. Here they are caught, then unblocked: a stop that comes while the worker
is still importing aiohttp is replayed once the event loop runs.
"""

import signal
import sys

_early: list[int] = []
_STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


def _remember(signum: int, frame: object) -> None:
    _early.append(signum)


for _signum in _STOP:
    signal.signal(_signum, _remember)
signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)

from replayer.workers.worker import die_with_parent, main

if __name__ == "__main__":
    die_with_parent()
    sys.exit(main(sys.argv[1:], early_signals=_early))
