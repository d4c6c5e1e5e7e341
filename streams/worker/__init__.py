"""The live worker: the only package that imports Faust."""
