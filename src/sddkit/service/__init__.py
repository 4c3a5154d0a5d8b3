"""The HTTP service of ``sdd serve``: the FastAPI app (``app``) and the web page it serves (``static/``)."""
