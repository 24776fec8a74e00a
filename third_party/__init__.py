"""Clean-room reimplementations of parts of other codebases (see each subpackage's docstrings)."""
