"""The core: cookies, domains, synchronization and the process pool (knows nothing of plugins)."""
