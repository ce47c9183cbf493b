"""Files and inputs: image reading and validation, atomic writes, caches, output kinds,
escaped path names, the one worker pool.  Floor 1: imports only :mod:`lrface.errors`.
"""
