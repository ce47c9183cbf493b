"""The ``lrface`` command line: the command table (:mod:`lrface.cli.main`) and one options
dataclass per command (:mod:`lrface.cli.options`).  The top floor.
"""
