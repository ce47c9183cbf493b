"""Galleries and search: exact top-k, flat and on-disk IVF galleries, identity templates.
Floor 5.
"""
