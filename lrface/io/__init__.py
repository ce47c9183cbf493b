"""lrface.io."""
