"""Development tooling: the local dev stack, embedded PostgreSQL, demo catalogue and seed, traffic, demo."""
