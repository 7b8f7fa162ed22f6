"""Tests of the carrier app: webhook contract suites and per-carrier quirks."""
