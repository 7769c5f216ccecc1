"""HTTP and WebSocket endpoints, their authentication, and the OpenAPI document."""
