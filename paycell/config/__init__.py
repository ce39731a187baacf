"""Configuration: settings from the environment."""
from paycell.config.settings import Settings, SettingsError, load

__all__ = ["Settings", "SettingsError", "load"]
