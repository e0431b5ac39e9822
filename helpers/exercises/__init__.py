"""Reference solutions and check functions of the chapters' exercises (one module per chapter)."""
