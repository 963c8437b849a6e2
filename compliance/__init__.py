"""Autobahn TestSuite harness (see README.md); a package only so that its tests can import it."""
