"""Kafka handlers of the enforcement service."""
