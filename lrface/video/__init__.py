"""Video: frames in and out, SORT tracks, ``lrface watch`` (tracks -> identities).  Floor 6.
"""
