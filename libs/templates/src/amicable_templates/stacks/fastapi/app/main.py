"""The API. Add routes here, or in modules under app/routers/ included with include_router."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from app.reload import mount_reload, reload_script_tag

TITLE = "Your API starts here"

app = FastAPI(title="Amicable app")
mount_reload(app)


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def home() -> str:
    """The landing page the preview shows; it links the interactive docs."""
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>{TITLE}</title>
    {reload_script_tag()}
  </head>
  <body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
    <h1>{TITLE}</h1>
    <p>A FastAPI app. Open the <a href="/docs">interactive API docs</a> or try
    <a href="/api/hello"><code>GET /api/hello</code></a>.</p>
  </body>
</html>"""


@app.get("/api/hello")
def hello() -> dict[str, str]:
    """A first endpoint."""
    return {"message": "Hello from FastAPI"}


@app.get("/api/health")
def health() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}
