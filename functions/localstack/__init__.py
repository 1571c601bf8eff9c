"""The local stack: every function on one server, on embedded adapters or real emulators. Never deployed."""
