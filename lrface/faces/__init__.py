"""lrface.faces."""
