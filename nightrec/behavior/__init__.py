"""Behaviour: the user-behaviour report (funnel, sessions, activity, long tail, drift)."""
