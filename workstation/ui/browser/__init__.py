"""The study browser: search bar, study table, series list."""
