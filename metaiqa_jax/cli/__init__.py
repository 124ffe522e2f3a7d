"""Console-script entry points (absl mains); `launch/*.py` are thin shims over them."""
