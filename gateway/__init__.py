"""The gateway: InferCDN's front door (OpenAI routes, proxy, fleet control)."""
