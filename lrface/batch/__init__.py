"""lrface.batch."""
