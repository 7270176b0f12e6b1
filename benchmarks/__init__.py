"""Benchmarks: chronik against the eventsourcing package and the raw drivers."""
