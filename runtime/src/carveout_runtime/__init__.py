"""What every Carveout service runs on, beside the wire contract: settings, logs, store
engines, retries, Kafka brokers and consumers with dead letters, the HTTP edge (auth,
limits, errors, operator routes), telemetry, AsyncAPI, log reading, replay and digests."""
