"""Checkpoint files: keys and names, the structure reader, safe reads, classification and listing, durable writes."""
