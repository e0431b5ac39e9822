"""Answer keys and check functions of the book's exercises, one module per chapter."""
