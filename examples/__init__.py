"""Example projects that run through restate end to end."""
