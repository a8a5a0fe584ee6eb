"""Data acquisition and cohort tables. Depends on nothing else of ours."""
