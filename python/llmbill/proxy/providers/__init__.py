"""Provider adapters: one module per provider, each meeting base.ChatAdapter (pure translation)."""
