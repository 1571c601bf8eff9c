"""Launchers for the real emulators the tests and `serve --emulators` run against."""
