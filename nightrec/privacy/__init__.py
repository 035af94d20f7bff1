"""Privacy: pseudonymised user ids, forgetting a user, retention of raw copies."""
