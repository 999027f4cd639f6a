"""The Carveout notification service: tells every party concerned, exactly once."""
