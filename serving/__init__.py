"""Online half: the live emergence-detection service. Never imports torch."""
