"""One router per concern: search, verify, embed, health (health, readiness, metrics)."""
