"""``python -m ra_sdk.cli``: the ``ra-sdk`` command."""

from . import main

main()
