"""A miniature procedural world of portraits: people, contexts, captions."""
