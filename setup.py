"""Build configuration beyond pyproject.toml: the optional C reader for PostgreSQL COPY.

``sqlsnap._pgcopy`` (src/sqlsnap/_pgcopy.c) reads COPY output a chunk at a time without the
GIL. It is optional: without a C compiler and Python's headers, or off Linux, the build skips
it and sqlsnap uses its Python loop, which gives the same bytes, more slowly.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension("sqlsnap._pgcopy", sources=["src/sqlsnap/_pgcopy.c"], optional=True)
    )

setup(ext_modules=ext_modules)
