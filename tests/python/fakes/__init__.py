"""Fakes of llmbill's outside services, shared by every test and benchmark (style habit 11).

Each fake serves both in-process (a background thread, for pytest) and as a real process (for
benchmarks and end-to-end tests). `FakeLago` (fakes/lago.py) is Lago's events and billing API.
Import it as `from tests.python.fakes.lago import FakeLago`; nothing is imported eagerly here, so
`python -m tests.python.fakes.lago` runs the module once.
"""
