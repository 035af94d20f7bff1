"""The names of the supported input formats, importable without the readers (the CLI's help)."""

FORMATS = ("auto", "nightrec", "movielens", "recbole", "retailrocket", "yoochoose", "diginetica", "sequences")
