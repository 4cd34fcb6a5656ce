"""modelops: the library and CLI the workflows call, one module per lifecycle step."""
