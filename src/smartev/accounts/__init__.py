"""Accounts: users, roles, password hashing, tokens, and who may see what."""
