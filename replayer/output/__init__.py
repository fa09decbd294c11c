"""What a run leaves in its folder: rows, journal, run state, summary."""
