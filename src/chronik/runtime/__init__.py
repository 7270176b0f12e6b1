"""The service runtime: settings, assembly, health, shutdown, observability."""
