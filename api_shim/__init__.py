"""The HTTP API: OpenAPI + mapping templates for API Gateway, and the Flask shim that runs them."""
