"""`python -m replayer` runs the same click group as the `replayer` script."""

from replayer.cli import main

main()
