"""Over-the-air releases: built and signed at the county, fetched over MQTT, installed side by side."""
