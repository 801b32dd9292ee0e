"""Serving a model over HTTP with OpenAI's API (``scratchgpt serve``).

- :mod:`.engine`: continuous batching, many requests in one decode loop (torch only);
- :mod:`.protocol`: OpenAI's request bodies and error shape (pydantic);
- :mod:`.app`: the endpoints on FastAPI;
- :mod:`.run`: uvicorn around them, with a graceful stop on SIGTERM.

FastAPI and uvicorn are the ``serve`` extra; only :mod:`.app` and :mod:`.run` import them.
"""
