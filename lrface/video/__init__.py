"""lrface.video."""
