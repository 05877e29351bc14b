"""The county link: topic contract, payload codec, uplink (outbox to broker) and downlink."""
