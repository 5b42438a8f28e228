"""``python -m ra_sdk.cli``: the ``ra-sdk`` command."""

from . import main

if __name__ == "__main__":  # a spawned process (decode="processes") imports this module too
    main()
