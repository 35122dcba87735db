"""A look-alike of Twilio's single-file voice samples (written for airadev's tests): a FastAPI app
that answers /incoming-call with TwiML connecting a media stream, and runs uvicorn itself."""

import os

from dotenv import load_dotenv
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse

load_dotenv()

OPENAI_API_KEY = os.getenv("OPENAI_API_KEY")
PORT = int(os.getenv("PORT", 5050))

app = FastAPI()

if not OPENAI_API_KEY:
    raise ValueError("Missing the OpenAI API key. Please set it in the .env file.")


@app.get("/", response_class=JSONResponse)
async def index_page():
    return {"message": "Media stream server is running"}


@app.api_route("/incoming-call", methods=["GET", "POST"])
async def handle_incoming_call(request: Request):
    host = request.url.hostname
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting you now.</Say>'
        f'<Connect><Stream url="wss://{host}/media-stream" /></Connect></Response>'
    )
    return HTMLResponse(content=twiml, media_type="application/xml")


@app.websocket("/media-stream")
async def handle_media_stream(websocket: WebSocket):
    await websocket.accept()
    await websocket.close()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="0.0.0.0", port=PORT)
