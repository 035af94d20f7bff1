"""Item and user attributes: the tables, the item vectors built from them, and the content-based
recommender that ranks by them (cold users, new items)."""
