"""lrface.search."""
