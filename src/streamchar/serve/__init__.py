"""`streamchar serve`: a live streaming server (FastAPI + uvicorn), a browser player, text pushed into a stream.

    app.py      the HTTP / WebSocket API and its validation
    worker.py   the thread that owns the model: sessions streamed round-robin, chunk by chunk
    metrics.py  Prometheus metrics
    page.html   the player: Media Source Extensions, a form, live readouts, the transcript as it is spoken
"""
