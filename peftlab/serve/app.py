"""HTTP front of an AdapterServer: a JSON API and one page to try adapters against their base model."""

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from peftlab.errors import PeftlabError
from peftlab.serve.page import PAGE
from peftlab.serve.server import AdapterServer


class PredictRequest(BaseModel):
    adapter: str
    text: str | None = None
    fields: dict[str, object] | None = None  # the row's columns, for tasks with several inputs
    compare_base: bool = True


def create_app(server: AdapterServer) -> FastAPI:
    app = FastAPI(title="peftlab serve", summary="one base model, many adapters")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/adapters")
    def adapters() -> dict:
        base = server.base
        return {
            "base": {"name": base.name, "name_or_path": base.name_or_path} if base else None,
            "adapters": [a.describe() for a in server.adapters.values()],
        }

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict:
        try:
            answer = server.predict(request.adapter, request.text, request.fields)
            base = server.predict(request.adapter, request.text, request.fields, base=True)
        except PeftlabError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        return {"adapter": request.adapter, **answer, "base": base if request.compare_base else None}

    return app
