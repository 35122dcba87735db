"""Misbehaving and stand-in processes that the tests run under airadev."""
