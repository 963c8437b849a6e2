"""Fuzz targets for Stargate's framing parsers; see ``fuzzing/README.md``.

Kept free of imports so that ``python -m fuzzing.fuzz`` can have atheris instrument
``stargate`` before anything loads it.
"""
