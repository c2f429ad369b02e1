"""LLAMA."""
