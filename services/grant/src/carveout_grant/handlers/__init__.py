"""Kafka handlers of the grant service."""
