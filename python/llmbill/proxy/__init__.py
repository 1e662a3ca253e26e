"""llmbill-proxy: an OpenAI-compatible gateway with virtual keys, spend tracking and Lago billing.

Imported only by the `llmbill-proxy` command (never by `import llmbill`): it loads the server stack.
"""
