"""The Carveout enforcement service: judges every access against the grants in force."""
