"""Benchmarks of ENTED: speed, and the measurements the docs quote."""
