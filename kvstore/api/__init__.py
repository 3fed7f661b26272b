"""The store's HTTP face: URLs, views, middleware, renderers, error handlers."""
