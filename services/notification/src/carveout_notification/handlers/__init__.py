"""Kafka handlers of the notification service."""
