"""The HTTP service: `create_app` builds the FastAPI app over an `Engine`; `serve` runs it.

    $ uvicorn contextd.server:create_app --factory
"""

from contextd.server.app import create_app

__all__ = ["create_app"]
