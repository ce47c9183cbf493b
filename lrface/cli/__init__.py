"""lrface.cli."""
