"""Code that several parts of the stack share: the event schema and the store connection."""
