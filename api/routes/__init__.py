"""One router per resource; ``pagelens.server.create_app`` includes them."""
