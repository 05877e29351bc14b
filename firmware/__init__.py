"""Window-unit firmware. On the board these files sit side by side and import each other by bare
name; the gateway imports only `firmware.link`, the protocol both sides share."""
