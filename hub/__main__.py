"""``python -m hub`` is the ``hub`` command."""

from hub.entry.cli import main

raise SystemExit(main())
