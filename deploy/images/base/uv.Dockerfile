# Local stand-in for ghcr.io/astral-sh/uv:<version>: nothing but /uv, from the uv wheel on PyPI.
FROM scratch
COPY uv /uv
