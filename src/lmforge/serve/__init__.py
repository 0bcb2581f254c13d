"""lmforge serve: a local web server over model folders, and the model catalogue."""
