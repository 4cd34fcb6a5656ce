"""The modelops model server (see issue 3); for now, the shared model-loading core."""
