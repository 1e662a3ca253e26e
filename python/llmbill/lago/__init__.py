"""What llmbill knows of Lago beyond sending events: spool slots, dead letters, reading events back,
and reconciling spend logs with what Lago stored. Used by the proxy and by the operator commands
(`llmbill.ops`); imports neither."""
