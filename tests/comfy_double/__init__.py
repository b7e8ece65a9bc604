"""The ComfyUI test double: a ComfyUI-shaped folder (main.py), run as its own process.

The server modules import each other by bare name, as ComfyUI's do, and run only
in the double's process (`python main.py`). Tests import `media`, `workflows` and
`client` from here; they start the double with the test kit (tests/kit/double.py).
"""
