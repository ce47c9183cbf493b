"""Embedding many images: resumable on-disk shards and the Ray Data engine.  Floor 4.
"""
