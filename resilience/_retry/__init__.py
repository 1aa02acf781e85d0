"""Retry: backoff delay math, the shared retry budget, and the retry decision core."""
