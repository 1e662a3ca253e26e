"""Route handlers, one module per area. Each handler: async (state, request) -> response."""
