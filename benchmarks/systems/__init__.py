"""One module per benchmarked system, each with a `run(workload, target, size)`."""
