"""Entry of a worker process: set up signals and parent-death before the heavy imports.

A stop can come while the worker is still importing aiohttp; caught here, it is
replayed once the event loop runs, instead of killing the worker with no summary.
"""

import signal
import sys

_early: list[int] = []


def _remember(signum: int, frame: object) -> None:
    _early.append(signum)


for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(_signum, _remember)

from replayer.workers.parent import die_with_parent, main

if __name__ == "__main__":
    die_with_parent()
    sys.exit(main(sys.argv[1:], early_signals=_early))
