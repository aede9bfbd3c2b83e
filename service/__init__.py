"""The HTTP service. A request goes: `app` (middleware, error handlers) -> `routers/<endpoint>`
-> `deps` (settings, API key, the loaded model and index) -> `uploads` (decode and check the
image) -> `batcher` (embedding and index search, each batched across concurrent requests, in the
index version `index_holder` keeps live and hot-reloads on rebuild). Responses are the models in
`schemas`; `middleware` guards body size and counts every request for `/metrics`."""
