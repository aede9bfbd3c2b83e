"""The HTTP service. A request goes: `app` (middleware, error handlers) -> `routers/<endpoint>`
-> `deps` (settings, API key, the loaded model and index) -> `uploads` (decode and check the
image) -> `batcher` (embedding, batched across concurrent requests) -> `index_holder` (search
in the live index version, hot-reloaded on rebuild). Responses are the models in `schemas`."""
