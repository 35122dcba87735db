import os

from fastapi import FastAPI

from app.api.routes import router

app = FastAPI(title=os.environ.get("PROJECT_NAME", "app"))
app.include_router(router, prefix="/api/v1")
