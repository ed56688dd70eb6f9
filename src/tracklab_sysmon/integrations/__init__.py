"""Optional adapters for other frameworks; each needs its extra and is never imported by the core."""
