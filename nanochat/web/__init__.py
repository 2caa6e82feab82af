"""The web chat: a FastAPI app that streams a checkpoint's answers to a browser page and to HTTP clients.

    schema.py   the request contract and its limits (every rule answers 400 naming the field)
    stream.py   token ids -> text pieces, never half a UTF-8 character, calculator calls kept apart
    pool.py     the workers (one Engine each), the bounded wait queue, generation in a thread per request
    load.py     a checkpoint -> workers (one per GPU, or N sharing one CPU model)
    app.py      the FastAPI app: /, /chat/completions, /health, /stats
    ui.html     the page (HTML, CSS and JS in one file; no CDN, no build step)

Started by `python -m nanochat.scripts.chat_web`. The event stream keeps nanochat's protocol, so its clients work:
`data: {"token": "...", "gpu": n}` lines and a final `data: {"done": true}`.
"""
