"""The ``copybot`` command line: one module per command, terminal formatting in ``terminal``."""
