"""Loopback fakes of the vendors (providers and carriers), one module per vendor id."""
