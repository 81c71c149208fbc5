"""create_app: the HTTP front of an AdapterServer, assembled from the routers, the shared state and the guard.

Every answer goes through the micro-batcher (serve/microbatch.py), so concurrent requests share model calls.
"""

from contextlib import asynccontextmanager

from fastapi import FastAPI

from peftlab.serve import openai_routes, routes
from peftlab.serve.limits import ServeOptions, install_guard
from peftlab.serve.registry import AdapterServer
from peftlab.serve.state import ServeState


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    app.state.serve.batcher.close()


def create_app(server: AdapterServer, options: ServeOptions | None = None) -> FastAPI:
    """A JSON API, OpenAI-style routes for generation adapters and one page, over `server`'s adapters."""
    app = FastAPI(title="peftlab serve", summary="one base model, many adapters", lifespan=lifespan)
    # The batcher starts here, not in the lifespan: a TestClient used without `with` runs no lifespan.
    app.state.serve = ServeState.start(server, options or ServeOptions())
    install_guard(app, app.state.serve.options)
    app.include_router(openai_routes.router)
    app.include_router(routes.router)
    return app
