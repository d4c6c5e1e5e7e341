"""copybot's edges around the pure core: serialisation, the replay command, the CLI and the Faust app.

Importing this package does not import Faust; the worker modules import it themselves.
"""
