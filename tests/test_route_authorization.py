"""Every endpoint that changes data has a test in which a user without the right is refused and nothing
changes (filled in below)."""
