"""One module per outside system; each implements a port of shared/ports.py."""
