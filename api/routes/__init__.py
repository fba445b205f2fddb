"""One router per resource; ``api.main.create_app`` includes them."""
