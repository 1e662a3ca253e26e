"""Billing sinks that plug into llmbill's callbacks and into LiteLLM's."""
