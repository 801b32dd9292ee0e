"""``python -m scratchgpt``: the same as the ``scratchgpt`` command."""

from .cli import main

raise SystemExit(main())
