"""Files that outlive a process: atomic writes, checksums, verified artifacts and locks."""
