"""Pure-ASGI adapters: middleware that translates between ASGI messages and the sans-IO core."""
