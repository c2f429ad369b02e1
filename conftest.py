"""pytest collection settings for the whole repository (fixtures live in tests/conftest.py)."""

# running this module's doctests would execute the command line
collect_ignore = ["llama/cli/__main__.py", "bench", "notebooks"]
