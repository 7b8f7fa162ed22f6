"""Transports of the provider legs: how bytes reach a vendor, nothing about what they mean."""
