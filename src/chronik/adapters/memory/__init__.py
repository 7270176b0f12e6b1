"""In memory: for tests and throwaway runs; nothing survives the process."""
