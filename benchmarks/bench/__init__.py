"""What the benchmark scripts share: the ETH/UCY runner and its tables, and the provenance of every record."""
