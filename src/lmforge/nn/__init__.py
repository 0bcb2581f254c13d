"""Building blocks shared by two or more neural families."""
