"""A local Apache Kafka broker for development and tests (start/stop/status), and the live harness."""
