"""The baseline: a bare FastAPI endpoint answering 200, served exactly like the webhooks service."""

from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.post("/webhooks/instagram")
async def accept(request: Request) -> Response:
    await request.body()
    return Response("EVENT_RECEIVED", media_type="text/plain")
