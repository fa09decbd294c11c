"""The replay engine: the stages from a valid session to its final outcome."""
