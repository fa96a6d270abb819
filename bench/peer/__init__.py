"""The peer: python-socketio's AsyncServer under uvicorn, doing what the bench asks of zocket."""
