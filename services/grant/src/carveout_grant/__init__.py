"""The Carveout grant service: system of record for regulator actions."""
