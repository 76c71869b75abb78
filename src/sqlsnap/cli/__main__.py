"""``python -m sqlsnap.cli``, as the single-module CLI allowed."""

from . import main

main()
