"""PySide6 widgets only: they show state and forward intent to the services."""
