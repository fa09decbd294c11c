"""Where records come from: reading inputs, validating lines, sharding users."""
