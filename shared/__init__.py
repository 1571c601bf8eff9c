"""The library every function deploys with: capabilities, ports, adapters and their wiring."""
