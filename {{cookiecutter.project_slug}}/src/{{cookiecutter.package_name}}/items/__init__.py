"""The example resource: a small ``items`` table behind create, list and get."""
