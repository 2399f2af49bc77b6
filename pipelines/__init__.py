"""The top floor, the drivers: plan and the Ray render driver, validate, the contact sheet,
benchmark sets, the loop and the render benchmark. Nothing imports this package but the tests."""

from core import stops

stops.starting()   # `python -m` one of this package's apps: a stop while it starts ends it at once
