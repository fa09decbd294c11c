"""`--workers N`: worker processes, each replaying a share of the users."""
