"""The HTTP service. A request goes: `app` (middleware, error handlers) -> `routers/<endpoint>`
-> `deps` (settings, API key, the loaded model and index) -> `uploads` (decode and check the
image) -> `batcher` (embedding and index search, each batched across concurrent requests, in the
index version `index_reloader` keeps live and hot-reloads on rebuild). Responses are the models in
`schemas`; `middleware` guards body size and counts every request for `/metrics`.

It loads a model only through `lookalike.bundle` and an index only through `lookalike.index`'s
public names: no training code, no timm, no torchvision.
"""

from lookalike.service.app import create_app
from lookalike.service.settings import Settings

__all__ = ["Settings", "create_app"]
