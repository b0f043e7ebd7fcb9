"""The service's version: one place, read by the package metadata (setup.cfg) and the routes that report it."""

__version__ = "0.1.0"
