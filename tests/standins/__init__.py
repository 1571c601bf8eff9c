"""Loopback stand-ins for SaaS that cannot run here, speaking each service's documented wire format."""
