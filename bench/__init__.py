"""The side-by-side benchmark: contestants (from the backend registry), timing harness, memory, reports."""
