"""Request limits, the API key guard and the allowed adapter folders: what a request may ask, and who may ask.

Limits are answered with a 4xx that names the flag; the API key is checked on every request (required off loopback);
adapter folders are read only from below the allowed roots.
"""

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from peftlab.rundir import RunDir

UNSAFE_WEIGHTS = (".bin", ".pt", ".pth", ".pkl", ".ckpt")  # pickle formats: loading them can run code


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 16  # jobs (rows) per model call
    max_wait_ms: float = 10.0  # how long the first queued job waits for company
    max_chars: int = 4000  # per text, prompt or field value
    max_texts: int = 32  # texts or prompts in one request
    max_body_bytes: int = 1_000_000
    max_tokens: int = 256  # ceiling on max_tokens (and on an adapter's own max_new_tokens)
    timeout_s: float = 60.0  # a request waiting longer gets 504
    api_key: str | None = None
    adapter_roots: tuple[Path, ...] = ()  # POST /adapters reads only below these; none: adding is off


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not provably this machine
        return False


def check_texts(texts: list[str], options: ServeOptions) -> None:
    if len(texts) > options.max_texts:
        raise HTTPException(413, f"{len(texts)} texts in one request; this server takes at most {options.max_texts}")
    longest = max((len(t) for t in texts), default=0)
    if longest > options.max_chars:
        raise HTTPException(413, f"a text of {longest} characters; this server takes at most {options.max_chars}")


def check_max_tokens(max_tokens: int | None, options: ServeOptions) -> None:
    if max_tokens is not None and not 1 <= max_tokens <= options.max_tokens:
        raise HTTPException(400, f"max_tokens={max_tokens}: this server allows 1 to {options.max_tokens}")


def allowed_folder(path: str, options: ServeOptions) -> Path:
    """`path` (absolute, or relative to a root) resolved, links followed, when it lies below an allowed root."""
    if not options.adapter_roots:
        raise HTTPException(403, "adding adapters is off: start the server with --adapter-root DIR")
    roots = [root.resolve() for root in options.adapter_roots]
    given = Path(path)
    for candidate in [given] if given.is_absolute() else [root / given for root in roots]:
        resolved = candidate.resolve()
        if resolved.is_dir() and any(resolved.is_relative_to(root) for root in roots):
            from peft.utils import SAFETENSORS_WEIGHTS_NAME  # peft's file name for adapter weights

            adapter = RunDir(resolved).adapter if RunDir(resolved).adapter.is_dir() else resolved
            if not (adapter / SAFETENSORS_WEIGHTS_NAME).is_file():
                raise HTTPException(400, f"path {path}: no {SAFETENSORS_WEIGHTS_NAME} (only safetensors are loaded)")
            unsafe = sorted(p.name for p in adapter.iterdir() if p.suffix in UNSAFE_WEIGHTS)
            if unsafe:
                raise HTTPException(400, f"path {path}: pickle weight files {unsafe} beside the adapter; refused")
            return resolved
    raise HTTPException(403, f"path {path}: not a folder below the server's --adapter-root folders")


def install_guard(app: FastAPI, options: ServeOptions) -> None:
    """API key and body size, checked before any route reads the request."""
    expected = f"Bearer {options.api_key}".encode() if options.api_key else None

    @app.middleware("http")
    async def guard(request: Request, call_next):
        # The page itself is static HTML (nothing to protect); everything it fetches is checked.
        if expected and request.url.path != "/":
            sent = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(sent, expected):
                detail = "missing or wrong API key: send the header Authorization: Bearer <key>"
                return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "a request body needs a Content-Length header"}, status_code=411)
            if int(length) > options.max_body_bytes:
                detail = f"request body of {length} bytes; this server takes at most {options.max_body_bytes}"
                return JSONResponse({"detail": detail}, status_code=413)
        return await call_next(request)
