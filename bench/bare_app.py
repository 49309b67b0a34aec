"""The floor for HTTP figures: a bare Flask route, served by the same gunicorn settings.

    gunicorn -k gthread --workers 1 --threads 8 ... bench.bare_app:app
"""
from datetime import UTC, datetime

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/bare")
def bare():
    # About the size of /status's answer head: a few fields and a timestamp.
    return jsonify(status="ready", ok=True, timestamp=datetime.now(UTC).isoformat())
