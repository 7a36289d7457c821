"""Gathering: from an alert to the evidence an engineer would look at."""
