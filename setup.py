"""Build configuration beyond pyproject.toml: the optional C reader for PostgreSQL COPY.

``sqlsnap._pgcopy`` (src/sqlsnap/_pgcopy.c) reads COPY output a chunk at a time without the
GIL, and turns binary COPY tuples into the snapshot's JSON (src/sqlsnap/_pgdecode.c; the
digits of floats in src/sqlsnap/_pgfloat.c). It is optional: without a C compiler and
Python's headers, or off Linux, the build skips it and sqlsnap has the server build the JSON
and reads it in Python: the same bytes, more slowly and with more work for the server.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "sqlsnap._pgcopy",
            sources=["src/sqlsnap/_pgcopy.c", "src/sqlsnap/_pgdecode.c", "src/sqlsnap/_pgfloat.c"],
            depends=["src/sqlsnap/_pgdecode.h", "src/sqlsnap/_pgfloat.h", "src/sqlsnap/_pgfloat_tables.h"],
            include_dirs=["src/sqlsnap"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
