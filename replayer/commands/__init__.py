"""The click commands beside `replayer run` (in cli.py): flags in, the work done elsewhere.

click is imported only here and in cli.py; the packages they call know nothing of it.
"""
