"""The delivery channels of a Subscription: rest-hook (`rest_hook.py`, signed HTTP POSTs) and websocket
(`websocket.py`)."""
