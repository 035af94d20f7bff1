"""Fallback: time-decayed popularity for cold users, merged with the model's lists into tonight's table."""
