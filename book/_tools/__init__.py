"""Helper scripts for maintaining the book (not part of gpt2lib)."""
