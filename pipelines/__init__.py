"""The top floor, the drivers: plan and the Ray render driver, validate, the contact sheet,
benchmark sets, the loop and the render benchmark. Nothing imports this package but the tests."""
