"""`amc-tf convert` and `amc-tf profile` (filled in by the converter work)."""

COMMANDS: list = []
