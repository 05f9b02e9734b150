"""Helpers shared by the black-box tests: server processes, the checking HTTP client, the
SPEC rules every response must meet, and decoders for compressed bodies."""
